// VNNI dot of a row-interleaved IQ4_XS group (layout: interleaved_iq4_xs.cpp) with up to 8
// Q8_K activation columns; compiled once per VNNI variant (vnni.h). Written once over the
// width (W): Ymm8 runs one group (dot_iq4_xs_x8), Zmm16 two consecutive groups in 512-bit
// vectors (dot_iq4_xs_x16, AVX512-VNNI; emulated in the tests) with each row's operations
// those of the 8-row pass, and the broadcasts, scale unpack and float work paid once.
//
// vpdpbusd wants unsigned weights, so the codebook is looked up already shifted by 128
// (-127..113 -> 1..241): one vpshufb per load and nibble half, shared by the columns, then
// one broadcast and one vpdpbusd per load, nibble half and column add 4 elements of all 8
// rows into int32 lanes — exact for every activation, -128 included (the AVX2 kernel needs
// a sign trick and, for -128, a slower exact path). One vpmulld per sub-block and column
// applies the rows' scales (|sum| <= 32 * 241 * 128, times 32: exact in int32); the shift
// adds 128 * scale * (the sub-block's activation sum), taken off once per super-block and
// column from the activations' bsums.
#include "backend/cpu/vnni.h"

#include "backend/cpu/interleaved_iq4_xs_simd.h"

namespace tandem::cpu::TANDEM_VNNI_NS {

using quant::BlockQ8_K;
using quant::kQK;

namespace {

// W: the width (Ymm8 for one group, Zmm16 for two consecutive ones).
template <class W>
struct SuperBlockScales {
  typename W::I scale[8];  // sub-block j's scale (-32..31) in int32 lane r
  typename W::I pair[4];   // sub-blocks 2p and 2p+1 in the int16 halves of lane r
};

template <class W>
struct VnniCodes {
  using I = typename W::I;
  // At 16 rows all 8 columns in one block (32 zmm registers hold them; 4 + 4 spilled around
  // the outlined calls): 8 columns 22% faster on Zen 5.
  static constexpr int kColumnBlock = W::kRows == 16 ? 8 : 4;

  template <int CB>
  __attribute__((always_inline)) static inline void accumulate(typename W::Ptr gb, const SuperBlockScales<W>& s,
                                                               const BlockQ8_K* const* ab, I* sumi) {
    const I low4 = W::set1_8(0x0F), table = iq4_xs_x8::codebook<W>(128);
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const int p = g / 2, i0 = 4 * (g % 2);
      I sum[CB];
      for (int c = 0; c < CB; ++c) sum[c] = W::zero();
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const I bits = W::load(gb, iq4_xs_x8::kQs + 256 * p + 32 * (i0 + k));
        const I lo = W::shuffle8(table, W::and_(bits, low4));
        const I hi = W::shuffle8(table, W::and_(W::template srli16<4>(bits), low4));
        for (int c = 0; c < CB; ++c) {
          const int8_t* act = ab[c]->qs + 32 * g + 4 * k;
          sum[c] = dpbusd(sum[c], lo, W::bcast4(act));
          sum[c] = dpbusd(sum[c], hi, W::bcast4(act + 16));
        }
      }
      for (int c = 0; c < CB; ++c) sumi[c] = W::add32(sumi[c], W::mullo32(sum[c], s.scale[g]));
    }
  }
};

// One source for both widths: W = Ymm8 (8 rows) or Zmm16 (16 rows); each row's operations
// are the same at both.
template <class W, int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  using I = typename W::I;
  using F = typename W::F;
  constexpr int64_t kBytes = iq4_xs_x8::kBytes;
  const typename W::Ptr groups = W::groups(group, n / kQK * kBytes);
  F acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = W::zero_ps();
  for (int64_t b = 0; b < n / kQK; ++b) {
    const typename W::Ptr gb = W::at(groups, b * kBytes);
    W::prefetch(gb, kBytes);
    const BlockQ8_K* ab[NC];
    for (int c = 0; c < NC; ++c) ab[c] = reinterpret_cast<const BlockQ8_K*>(a + c * a_stride) + b;
    SuperBlockScales<W> s;
    I scale16[8];
    iq4_xs_x8::unpack_scales<W>(gb, scale16);
    for (int j = 0; j < 8; ++j) s.scale[j] = W::template srai32<16>(scale16[j]);
    for (int p = 0; p < 4; ++p) s.pair[p] = W::template blend16<0xAA>(scale16[2 * p], scale16[2 * p + 1]);
    I sumi[NC];
    // Starts at -128 * sum_j scale[r][j] * (activation sum of sub-block j): the codes' shift.
    for (int c = 0; c < NC; ++c) {
      sumi[c] = W::sub32(W::zero(), W::template slli32<7>(k4_x8::pair_sums_dot<W>(s.pair, *ab[c])));
    }
    k4_x8::accumulate_all<VnniCodes<W>, 0, NC>(gb, s, ab, sumi);
    const F d = W::load_f16(gb, 0);
    for (int c = 0; c < NC; ++c) acc[c] = W::fmadd(W::cvt(sumi[c]), W::mul(d, W::set1_ps(ab[c]->d)), acc[c]);
  }
  for (int c = 0; c < NC; ++c) W::store(out + c * os, acc[c]);
}

template <class W>
void dot_iq4_xs(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns<W, NC>(n, group, a, a_stride, out, out_stride); });
}

}  // namespace

void dot_iq4_xs_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                   int64_t out_stride) {
  dot_iq4_xs<Ymm8>(n, group, a, a_stride, n_cols, out, out_stride);
}

#if defined(TANDEM_VNNI_X16)
void dot_iq4_xs_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                    int64_t out_stride) {
  dot_iq4_xs<Zmm16>(n, group, a, a_stride, n_cols, out, out_stride);
}
#endif

}  // namespace tandem::cpu::TANDEM_VNNI_NS
