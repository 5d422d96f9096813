// AVX2 dot of a row-interleaved Q8_0 group (layout: interleaved_q8_0.cpp) with up to 8
// Q8_0 activation columns.
//
// Per block the 8 chunks (4 elements of each of the 8 rows) are loaded and their absolute
// values taken once; for each column a chunk's 4 activation bytes are broadcast, given the
// weights' signs, and maddubs'ed with |w|: each row's pair sums stay in its own lanes, so
// the column's 8 row sums end in one vector without a horizontal sum (the frame:
// interleaved_block32_simd.h's dot_columns_signed).
#include <immintrin.h>

#include "backend/cpu/interleaved_block32_simd.h"

namespace tandem::cpu {

void dot_q8_0_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  block32_x8::group_dot_signed<block32_x8::Q8_0Signed>(n, group, a, a_stride, n_cols, out, out_stride);
}

}  // namespace tandem::cpu
