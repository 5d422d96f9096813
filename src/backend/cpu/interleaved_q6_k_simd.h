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

// The 16-element group of the rows whose 96 bytes (per group) start at y, as 4 vectors of
// codes 0..63: q[v] holds elements 4v..4v+3 of every row.
template <class W>
inline void group_codes(typename W::Ptr y, typename W::I q[4]) {
  using I = typename W::I;
  const I low6 = W::set1_8(0x3F), top2 = W::set1_8(static_cast<char>(0xC0));
  const I y0 = W::load(y, 0), y1 = W::load(y, 32), y2 = W::load(y, 64);
  // Masked before shifting, so the 16-bit shifts carry no bits across bytes.
  q[3] = W::or_(W::or_(W::template srli16<6>(W::and_(y0, top2)), W::template srli16<4>(W::and_(y1, top2))),
                W::template srli16<2>(W::and_(y2, top2)));
  q[0] = W::and_(y0, low6);
  q[1] = W::and_(y1, low6);
  q[2] = W::and_(y2, low6);
}

// Products supplies template <int NC> static void add(const I q[4], I scale,
// const BlockQ8_K* const col[NC], int k0, I sumi[NC]) (I = W::I): adds, per row, the
// group's scale times (codes q . activation elements k0..k0+15 of column c) to sumi[c];
// `scale` holds each row's (signed) group scale in both int16 halves of its 32-bit lane.
// W: the width (Ymm8: one group; Zmm16 in vnni.h: two consecutive groups, 16 rows), with
// the same operations per row at both widths.
template <class Products, int NC, class W = Ymm8>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t out_stride) {
  using quant::BlockQ8_K;
  using I = typename W::I;
  // int16 scales [2p: r0..r3][2p+1: r0..r3] per lane -> (2p, 2p+1) pairs per row, for madd with bsums.
  const I pair_order = W::widen(
      _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15));
  const typename W::Ptr groups = W::groups(group, n / quant::kQK * kBytes);
  typename W::F acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = W::zero_ps();
  for (int64_t i = 0; i < n / quant::kQK; ++i) {
    const typename W::Ptr sb = W::at(groups, i * kBytes);
    const BlockQ8_K* col[NC];
    for (int c = 0; c < NC; ++c) col[c] = reinterpret_cast<const BlockQ8_K*>(a + c * a_stride) + i;
    I sumi[NC];
    for (int c = 0; c < NC; ++c) sumi[c] = W::zero();
    for (int p = 0; p < 8; ++p) {
      // Prefetch spread over the loop, an eighth of the super-block at a time: one loop over
      // the whole super-block up front cost 15% of a one-column dot in cache.
      W::prefetch(W::at(sb, p * kBytes / 8), 256);
      const I pair_scales = W::load_i8_as_i16(sb, kScales + 16 * p);
      // Codes are stored +32: subtract 32 * scale[g] * bsum[g] (scale * 32 fits int16).
      const I offset_scales = W::template slli16<5>(W::shuffle8(pair_scales, pair_order));
      for (int c = 0; c < NC; ++c) {
        sumi[c] = W::sub32(sumi[c], W::madd16(offset_scales, W::bcast4(col[c]->bsums + 2 * p)));
      }
      I q[4];
      group_codes<W>(W::at(sb, kCodes + 192 * p), q);
      Products::template add<NC>(q, W::unpacklo16(pair_scales, pair_scales), col, 32 * p, sumi);
      group_codes<W>(W::at(sb, kCodes + 192 * p + 96), q);
      Products::template add<NC>(q, W::unpackhi16(pair_scales, pair_scales), col, 32 * p + 16, sumi);
    }
    const typename W::F d = W::load_f16(sb, 0);
    for (int c = 0; c < NC; ++c) {
      acc[c] = W::fmadd(W::mul(d, W::set1_ps(col[c]->d)), W::cvt(sumi[c]), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) W::store(out + c * out_stride, acc[c]);
}

}  // namespace
}  // namespace tandem::cpu::q6_k_x8
