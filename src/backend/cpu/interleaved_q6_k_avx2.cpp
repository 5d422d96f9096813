// AVX2 group dot of interleaved Q6_K (layout in interleaved_q6_k.cpp, frame in
// interleaved_q6_k_simd.h) with Q8_K activations.
//
// Each vector of codes is multiplied (maddubs) with the matching 4 activation bytes of a
// column broadcast to every lane, two products are added in int16
// (|.| <= 2 * 2 * 63 * 128 < 2^15) and madd by the rows' group scales widens to one int32
// per row.
#include <immintrin.h>

#include "backend/cpu/interleaved_q6_k_simd.h"

namespace tandem::cpu {

using quant::BlockQ8_K;

namespace {

struct MaddubsProducts {
  template <int NC>
  static inline void add(const __m256i q[4], __m256i scale, const BlockQ8_K* const col[NC], int k0, __m256i sumi[NC]) {
    for (int c = 0; c < NC; ++c) {
      const int8_t* x = col[c]->qs + k0;
      const __m256i s01 =
          _mm256_add_epi16(_mm256_maddubs_epi16(q[0], broadcast4(x)), _mm256_maddubs_epi16(q[1], broadcast4(x + 4)));
      const __m256i s23 =
          _mm256_add_epi16(_mm256_maddubs_epi16(q[2], broadcast4(x + 8)), _mm256_maddubs_epi16(q[3], broadcast4(x + 12)));
      sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(scale, s01), _mm256_madd_epi16(scale, s23)));
    }
  }
};

}  // namespace

void dot_q6_k_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() {
    q6_k_x8::dot_columns<MaddubsProducts, NC>(n, group, a, a_stride, out, out_stride);
  });
}

}  // namespace tandem::cpu
