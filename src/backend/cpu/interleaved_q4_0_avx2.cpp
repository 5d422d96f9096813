// AVX2 dots of row-interleaved Q4_0 and IQ4_NL groups (layout: interleaved_q4_0.cpp,
// frames: interleaved_block32_simd.h) with up to 8 Q8_0 activation columns.
//
// Q4_0's codes (0..15, offset 8) go through the unsigned frame as Q5_0's do. IQ4_NL's
// values (-127..113) do not fit it: as unsigned codes (+ 128) a pair of products can pass
// maddubs's 16-bit range, so they take the signed frame, as Q8_0.
#include <immintrin.h>

#include "backend/cpu/interleaved_block32_simd.h"

namespace tandem::cpu {

void dot_q4_0_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  block32_x8::group_dot<block32_x8::Q4_0Codes, block32_x8::MaddubsProducts>(n, group, a, a_stride, n_cols, out,
                                                                            out_stride);
}

void dot_iq4_nl_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                        int64_t out_stride) {
  block32_x8::group_dot_signed<block32_x8::IQ4_NLSigned>(n, group, a, a_stride, n_cols, out, out_stride);
}

}  // namespace tandem::cpu
