// AVX2 dot of a row-interleaved Q5_0 group (layout: interleaved_q5_0.cpp) with up to 8
// Q8_0 activation columns.
//
// Per block the 8 chunks of codes (0..31) are unpacked once; for each column a chunk's
// 4 activation bytes are broadcast, maddubs gives each row's pair sums in its own lanes,
// four chunks add in 16 bits (4 * 2 * 31 * 128 < 2^15) and one madd widens them: the
// column's 8 row sums end in one vector without a horizontal sum. The codes' offset of 16
// is taken off in integers with the activation block's code sum, computed once per block
// and column before the rows' work (so the result is exact, as the row kernel's).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "backend/cpu/avx2_util.h"
#include "backend/cpu/interleaved.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockQ5_0;
using quant::BlockQ8_0;

namespace {

constexpr int64_t kGroupBlockBytes = 8 * sizeof(BlockQ5_0);
// Blocks whose activation sums are taken ahead of the rows' work (bounded stack use).
constexpr int64_t kSpan = 32;

template <int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  const int64_t nb = n / 32;
  const __m256i low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10), ones = _mm256_set1_epi16(1);
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  alignas(32) int32_t offset[kSpan][NC];  // 16 * sum of the block's activation codes
  alignas(32) float scale_a[kSpan][NC];
  for (int64_t b0 = 0; b0 < nb; b0 += kSpan) {
    const int64_t b1 = std::min(nb, b0 + kSpan);
    for (int c = 0; c < NC; ++c) {
      const auto* ab = reinterpret_cast<const BlockQ8_0*>(a + c * a_stride);
      for (int64_t b = b0; b < b1; ++b) {
        const __m256i s = _mm256_maddubs_epi16(_mm256_set1_epi8(16), load256(ab[b].qs));
        offset[b - b0][c] = hsum_i32(_mm256_madd_epi16(s, ones));
        scale_a[b - b0][c] = f16(ab[b].d);
      }
    }
    for (int64_t b = b0; b < b1; ++b) {
      const uint8_t* gb = group + b * kGroupBlockBytes;
      prefetch_weights(gb, kGroupBlockBytes);
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb)));
      const __m256i hb = load256(gb + 16 + 128);
      __m256i q[8];
      for (int v = 0; v < 4; ++v) {
        const __m256i raw = load256(gb + 16 + 32 * v);
        q[v] = _mm256_and_si256(raw, low4);
        q[v + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
      }
      // Fifth bit of chunk i is bit i of hb's bytes: move it to bit 4 (16-bit shifts
      // carry bits across bytes, but never into bit 4 of a byte).
      q[0] = _mm256_or_si256(q[0], _mm256_and_si256(_mm256_slli_epi16(hb, 4), bit4));
      q[1] = _mm256_or_si256(q[1], _mm256_and_si256(_mm256_slli_epi16(hb, 3), bit4));
      q[2] = _mm256_or_si256(q[2], _mm256_and_si256(_mm256_slli_epi16(hb, 2), bit4));
      q[3] = _mm256_or_si256(q[3], _mm256_and_si256(_mm256_slli_epi16(hb, 1), bit4));
      q[4] = _mm256_or_si256(q[4], _mm256_and_si256(hb, bit4));
      q[5] = _mm256_or_si256(q[5], _mm256_and_si256(_mm256_srli_epi16(hb, 1), bit4));
      q[6] = _mm256_or_si256(q[6], _mm256_and_si256(_mm256_srli_epi16(hb, 2), bit4));
      q[7] = _mm256_or_si256(q[7], _mm256_and_si256(_mm256_srli_epi16(hb, 3), bit4));
      for (int c = 0; c < NC; ++c) {
        const uint8_t* aq = a + c * a_stride + b * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, qs);
        __m256i p[8];
        for (int i = 0; i < 8; ++i) p[i] = _mm256_maddubs_epi16(q[i], broadcast4(aq + 4 * i));
        const __m256i s0 = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
        const __m256i s1 = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
        __m256i sum = _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones));
        sum = _mm256_sub_epi32(sum, _mm256_set1_epi32(offset[b - b0][c]));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, _mm256_set1_ps(scale_a[b - b0][c])), acc[c]);
      }
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * os, acc[c]);
}

}  // namespace

void dot_q5_0_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns<NC>(n, group, a, a_stride, out, out_stride); });
}

}  // namespace tandem::cpu
