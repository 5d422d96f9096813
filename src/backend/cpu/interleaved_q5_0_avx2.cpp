// AVX2 dot of a row-interleaved Q5_0 group (layout: interleaved_q5_0.cpp, frame:
// interleaved_block32_simd.h) with up to 8 Q8_0 activation columns.
//
// maddubs gives each row's pair sums of codes (0..31) and activations in its own lanes,
// four chunks add in 16 bits (4 * 2 * 31 * 128 < 2^15) and one madd widens them.
#include <immintrin.h>

#include "backend/cpu/interleaved_block32_simd.h"

namespace tandem::cpu {

namespace {

struct MaddubsProducts {
  static inline int code_sum(const int8_t* qs, int weight) {
    const __m256i s = _mm256_maddubs_epi16(_mm256_set1_epi8(static_cast<char>(weight)), load256(qs));
    return hsum_i32(_mm256_madd_epi16(s, _mm256_set1_epi16(1)));
  }
  static inline __m256i dot(const __m256i q[8], const uint8_t* aq) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i p[8];
    for (int i = 0; i < 8; ++i) p[i] = _mm256_maddubs_epi16(q[i], broadcast4(aq + 4 * i));
    const __m256i s0 = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
    const __m256i s1 = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
    return _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones));
  }
};

}  // namespace

void dot_q5_0_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() {
    block32_x8::dot_columns<block32_x8::Q5_0Codes, MaddubsProducts, NC>(n, group, a, a_stride, out, out_stride);
  });
}

}  // namespace tandem::cpu
