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

struct VnniProducts {
  template <int NC>
  static inline void add(const __m256i q[4], __m256i scale, const BlockQ8_K* const col[NC], int k0, __m256i sumi[NC]) {
    const __m256i scale32 = _mm256_srai_epi32(scale, 16);  // the upper int16 copy, sign-extended
    for (int c = 0; c < NC; ++c) {
      const int8_t* x = col[c]->qs + k0;
      __m256i s = dpbusd(_mm256_setzero_si256(), q[0], broadcast4(x));
      s = dpbusd(s, q[1], broadcast4(x + 4));
      s = dpbusd(s, q[2], broadcast4(x + 8));
      s = dpbusd(s, q[3], broadcast4(x + 12));
      sumi[c] = _mm256_add_epi32(sumi[c], _mm256_mullo_epi32(s, scale32));
    }
  }
};

}  // namespace

void dot_q6_k_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() {
    q6_k_x8::dot_columns<VnniProducts, NC>(n, group, a, a_stride, out, out_stride);
  });
}

}  // namespace tandem::cpu::TANDEM_VNNI_NS
