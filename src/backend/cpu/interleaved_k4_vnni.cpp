// VNNI dots of row-interleaved Q4_K and Q5_K groups (layouts: interleaved_q4_k.cpp,
// interleaved_q5_k.cpp) with up to 8 Q8_K activation columns; compiled once per VNNI
// variant (vnni.h).
//
// Everything but the products is the AVX2 kernels' (interleaved_k4.h): scales and mins
// unpacked once per super-block, the mins term through the activations' bsums, the same
// loads of codes (Q4KLoads, Q5KLoads). The products: one vpdpbusd per load and column adds
// a sub-block's 4 elements of all 8 rows straight into int32 lanes (no int16 stage, so no
// half-sub-block split for Q5_K), and one vpmulld per sub-block and column applies the
// rows' 6-bit scales (a sub-block's sum is at most 32 * 31 * 128, times 63: exact in int32).
#include "backend/cpu/vnni.h"

#include "backend/cpu/interleaved_k4.h"

namespace tandem::cpu::TANDEM_VNNI_NS {

using quant::BlockQ8_K;

namespace {

// W: the width (Ymm8 for one group, Zmm16 for two); Loads: the type's code loads at W.
template <class W, class Loads>
struct VnniCodes {
  using I = typename W::I;
  using Ptr = typename W::Ptr;
  static constexpr int64_t kBlockBytes = Loads::kBlockBytes;
  // Columns per block (interleaved_k4.h): at 16 rows all 8 in one block, as the 32 zmm
  // registers hold them (4 + 4 spilled the frame's vectors around the outlined calls: one
  // block runs Q4_K's 8 columns 7% and Q5_K's 30% faster on Zen 5).
  static constexpr int kColumnBlock = W::kRows == 16 ? 8 : 4;

  template <int P, int CB>
  __attribute__((always_inline)) static inline void sub_block_pair(Ptr gb, I scale_lo, I scale_hi,
                                                                   const BlockQ8_K* const* ab, I* sumi) {
    I sum_lo[CB], sum_hi[CB];
    for (int c = 0; c < CB; ++c) sum_lo[c] = sum_hi[c] = W::zero();
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      I lo, hi;
      Loads::template codes<P>(gb, i, lo, hi);
      for (int c = 0; c < CB; ++c) {
        const int8_t* act = ab[c]->qs + 64 * P + 4 * i;
        sum_lo[c] = dpbusd(sum_lo[c], lo, W::bcast4(act));
        sum_hi[c] = dpbusd(sum_hi[c], hi, W::bcast4(act + 32));
      }
    }
    for (int c = 0; c < CB; ++c) {
      sumi[c] = W::add32(sumi[c], W::add32(W::mullo32(sum_lo[c], scale_lo), W::mullo32(sum_hi[c], scale_hi)));
    }
  }

  template <int CB>
  __attribute__((always_inline)) static inline void accumulate(Ptr gb, const k4_x8::SuperBlockScalesW<W>& s,
                                                               const BlockQ8_K* const* ab, I* sumi) {
    // s.scale[j] holds the scale in both int16 halves of each lane (for AVX2's madd): keep one.
    const I low16 = W::set1_32(0xFFFF);
    const auto scale = [&](int j) { return W::and_(s.scale[j], low16); };
    sub_block_pair<0, CB>(gb, scale(0), scale(1), ab, sumi);
    sub_block_pair<1, CB>(gb, scale(2), scale(3), ab, sumi);
    sub_block_pair<2, CB>(gb, scale(4), scale(5), ab, sumi);
    sub_block_pair<3, CB>(gb, scale(6), scale(7), ab, sumi);
  }
};

// One source for both widths: W = Ymm8 (8 rows) or Zmm16 (16 rows).
template <class W, template <class> class Loads>
void dot_k4(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
            int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() {
    k4_x8::dot_columns<VnniCodes<W, Loads<W>>, NC, W>(n, group, a, a_stride, out, out_stride);
  });
}

}  // namespace

void dot_q4_k_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t out_stride) {
  dot_k4<Ymm8, k4_x8::Q4KLoadsW>(n, group, a, a_stride, n_cols, out, out_stride);
}

void dot_q5_k_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t out_stride) {
  dot_k4<Ymm8, k4_x8::Q5KLoadsW>(n, group, a, a_stride, n_cols, out, out_stride);
}

#if defined(TANDEM_VNNI_X16)
void dot_q4_k_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                  int64_t out_stride) {
  dot_k4<Zmm16, k4_x8::Q4KLoadsW>(n, group, a, a_stride, n_cols, out, out_stride);
}

void dot_q5_k_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                  int64_t out_stride) {
  dot_k4<Zmm16, k4_x8::Q5KLoadsW>(n, group, a, a_stride, n_cols, out, out_stride);
}
#endif

}  // namespace tandem::cpu::TANDEM_VNNI_NS
