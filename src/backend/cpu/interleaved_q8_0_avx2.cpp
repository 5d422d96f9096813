// AVX2 dot of a row-interleaved Q8_0 group (layout: interleaved_q8_0.cpp) with up to 8
// Q8_0 activation columns.
//
// Per block the 8 chunks (4 elements of each of the 8 rows) are loaded and their absolute
// values taken once; for each column a chunk's 4 activation bytes are broadcast, given the
// weights' signs, and maddubs'ed with |w|: each row's pair sums stay in its own lanes, so
// the column's 8 row sums end in one vector without a horizontal sum. (Pair sums reach
// 2 * 127 * 127, so they are widened before adding.)
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/avx2_util.h"
#include "backend/cpu/interleaved.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockQ8_0;

namespace {

constexpr int64_t kGroupBlockBytes = 8 * sizeof(BlockQ8_0);

template <int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  const int64_t nb = n / 32;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* gb = group + b * kGroupBlockBytes;
    prefetch_weights(gb, kGroupBlockBytes);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb)));
    __m256i w[8], uw[8];
    for (int i = 0; i < 8; ++i) {
      w[i] = load256(gb + 16 + 32 * i);
      uw[i] = _mm256_sign_epi8(w[i], w[i]);
    }
    for (int c = 0; c < NC; ++c) {
      const auto* ab = reinterpret_cast<const BlockQ8_0*>(a + c * a_stride) + b;
      __m256i sum = _mm256_setzero_si256();
      for (int i = 0; i < 8; ++i) {
        const __m256i p = _mm256_maddubs_epi16(uw[i], _mm256_sign_epi8(broadcast4(ab->qs + 4 * i), w[i]));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, ones));
      }
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, _mm256_set1_ps(f16(ab->d))), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * os, acc[c]);
}

}  // namespace

void dot_q8_0_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns<NC>(n, group, a, a_stride, out, out_stride); });
}

}  // namespace tandem::cpu
