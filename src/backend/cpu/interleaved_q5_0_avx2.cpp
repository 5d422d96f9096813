// AVX2 dot of a row-interleaved Q5_0 group (layout: interleaved_q5_0.cpp, frame:
// interleaved_block32_simd.h) with up to 8 Q8_0 activation columns.
#include <immintrin.h>

#include "backend/cpu/interleaved_block32_simd.h"

namespace tandem::cpu {

void dot_q5_0_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  block32_x8::group_dot<block32_x8::Q5_0Codes, block32_x8::MaddubsProducts>(n, group, a, a_stride, n_cols, out,
                                                                            out_stride);
}

}  // namespace tandem::cpu
