// VNNI group dot of interleaved Q6_K (layout in interleaved_q6_k.cpp, frame in
// interleaved_q6_k_simd.h) with Q8_K activations; compiled once per VNNI variant (vnni.h).
//
// Four vpdpbusd add a 16-element group's products straight into int32 lanes (one per
// row), and one vpmulld applies the rows' signed group scales: |sum| <= 16 * 63 * 128,
// times 128, is exact in int32. AVX2 needs four maddubs, two adds and two madds.
#include "backend/cpu/vnni.h"

#include "backend/cpu/interleaved_q6_k_simd.h"

namespace tandem::cpu::TANDEM_VNNI_NS {

using quant::BlockQ8_K;

namespace {

// W: the width (Ymm8 for one group, Zmm16 for two).
template <class W>
struct VnniProducts {
  using I = typename W::I;
  template <int NC>
  static inline void add(const I q[4], I scale, const BlockQ8_K* const col[NC], int k0, I sumi[NC]) {
    const I scale32 = W::template srai32<16>(scale);  // the upper int16 copy, sign-extended
    for (int c = 0; c < NC; ++c) {
      const int8_t* x = col[c]->qs + k0;
      I s = dpbusd(W::zero(), q[0], W::bcast4(x));
      s = dpbusd(s, q[1], W::bcast4(x + 4));
      s = dpbusd(s, q[2], W::bcast4(x + 8));
      s = dpbusd(s, q[3], W::bcast4(x + 12));
      sumi[c] = W::add32(sumi[c], W::mullo32(s, scale32));
    }
  }
};

// One source for both widths.
template <class W>
void dot_q6_k(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
              int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() {
    q6_k_x8::dot_columns<VnniProducts<W>, NC, W>(n, group, a, a_stride, out, out_stride);
  });
}

}  // namespace

void dot_q6_k_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t out_stride) {
  dot_q6_k<Ymm8>(n, group, a, a_stride, n_cols, out, out_stride);
}

#if defined(TANDEM_VNNI_X16)
void dot_q6_k_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                  int64_t out_stride) {
  dot_q6_k<Zmm16>(n, group, a, a_stride, n_cols, out, out_stride);
}
#endif

}  // namespace tandem::cpu::TANDEM_VNNI_NS
