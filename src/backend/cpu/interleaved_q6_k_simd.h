// The row-interleaved Q6_K group dot's frame (layout: interleaved_q6_k.cpp), shared by the
// AVX2 and VNNI kernels (interleaved_q6_k_avx2.cpp, interleaved_q6_k_vnni.cpp), which differ
// only in how a 16-element group's codes meet the activations (Products below).
//
// Per 16-element group, four vectors of unsigned codes hold 4 consecutive elements of each
// of the 8 rows (row r in 32-bit lane r). The codes' +32 offset is removed once per
// sub-block pair and column in integers from the activation's bsums; one cvt and FMA per
// super-block and column apply d_w * d_a. The codes are unpacked once per super-block for
// every column, and the 8 row sums land in the 8 lanes of the accumulator: no horizontal
// sums. Include only from files compiled with -mavx2 -mfma -mf16c or wider; internal
// linkage, as avx2_util.h.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/avx2_util.h"
#include "backend/cpu/interleaved.h"
#include "quant/blocks.h"

namespace tandem::cpu::q6_k_x8 {
namespace {

inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// The 16-element group of the 8 rows whose 96 bytes start at y, as 4 vectors of codes
// 0..63: q[v] holds elements 4v..4v+3 of every row.
inline void group_codes(const uint8_t* y, __m256i q[4]) {
  const __m256i low6 = _mm256_set1_epi8(0x3F), top2 = _mm256_set1_epi8(static_cast<char>(0xC0));
  const __m256i y0 = load256(y), y1 = load256(y + 32), y2 = load256(y + 64);
  // Masked before shifting, so the 16-bit shifts carry no bits across bytes.
  q[3] = _mm256_or_si256(
      _mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(y0, top2), 6), _mm256_srli_epi16(_mm256_and_si256(y1, top2), 4)),
      _mm256_srli_epi16(_mm256_and_si256(y2, top2), 2));
  q[0] = _mm256_and_si256(y0, low6);
  q[1] = _mm256_and_si256(y1, low6);
  q[2] = _mm256_and_si256(y2, low6);
}

// Products supplies template <int NC> static void add(const __m256i q[4], __m256i scale,
// const BlockQ8_K* const col[NC], int k0, __m256i sumi[NC]): adds, per row, the group's
// scale times (codes q . activation elements k0..k0+15 of column c) to sumi[c]; `scale`
// holds each row's (signed) group scale in both int16 halves of its 32-bit lane.
template <class Products, int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t out_stride) {
  using quant::BlockQ8_K;
  // int16 scales [2p: r0..r3][2p+1: r0..r3] per lane -> (2p, 2p+1) pairs per row, for madd with bsums.
  const __m256i pair_order =
      _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / quant::kQK; ++i) {
    const uint8_t* sb = group + i * kBytes;
    const BlockQ8_K* col[NC];
    for (int c = 0; c < NC; ++c) col[c] = reinterpret_cast<const BlockQ8_K*>(a + c * a_stride) + i;
    __m256i sumi[NC];
    for (int c = 0; c < NC; ++c) sumi[c] = _mm256_setzero_si256();
    for (int p = 0; p < 8; ++p) {
      // Prefetch spread over the loop, an eighth of the super-block at a time: one loop over
      // the whole super-block up front cost 15% of a one-column dot in cache.
      prefetch_weights(sb + p * kBytes / 8, 256);
      const __m256i pair_scales = _mm256_cvtepi8_epi16(load128(sb + kScales + 16 * p));
      // Codes are stored +32: subtract 32 * scale[g] * bsum[g] (scale * 32 fits int16).
      const __m256i offset_scales = _mm256_slli_epi16(_mm256_shuffle_epi8(pair_scales, pair_order), 5);
      for (int c = 0; c < NC; ++c) {
        sumi[c] = _mm256_sub_epi32(sumi[c], _mm256_madd_epi16(offset_scales, broadcast4(col[c]->bsums + 2 * p)));
      }
      __m256i q[4];
      group_codes(sb + kCodes + 192 * p, q);
      Products::template add<NC>(q, _mm256_unpacklo_epi16(pair_scales, pair_scales), col, 32 * p, sumi);
      group_codes(sb + kCodes + 192 * p + 96, q);
      Products::template add<NC>(q, _mm256_unpackhi_epi16(pair_scales, pair_scales), col, 32 * p + 16, sumi);
    }
    const __m256 d = _mm256_cvtph_ps(load128(sb));
    for (int c = 0; c < NC; ++c) {
      acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(col[c]->d)), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * out_stride, acc[c]);
}

}  // namespace
}  // namespace tandem::cpu::q6_k_x8
