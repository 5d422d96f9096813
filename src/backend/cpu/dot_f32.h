// Dot products of one f32/F16/BF16 weight row with many f32 activation rows (the inner loop
// of the float matmul), a small matrix product and axpy (attention's value sums, DeltaNet's
// chunk algebra). A portable path and an AVX2+FMA path (four activation rows per pass, so
// each weight vector loaded is used four times), picked once at start-up from the CPU's
// features. Both sum in a fixed order per path; results differ between paths by rounding only.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tandem::cpu {

// y[t * y_stride] = sum_i w[i] * x[t * x_stride + i] (+ bias) for t < n_tokens.
using DotRows = void(const float* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride, float* y,
                     int64_t y_stride, float bias);
using DotRowsFn = DotRows*;
DotRows dot_rows_portable, dot_rows_avx2;
// The best path this CPU can run (honours TANDEM_CPU_MAX, see core/cpu_features.h).
DotRowsFn best_dot_rows();

// The same over rows of F16 or BF16 weights, widened to f32 in registers as they are read
// (no widened copy of the row is written).
using HalfDotRows = void(const uint16_t* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride, float* y,
                         int64_t y_stride, float bias);
using HalfDotRowsFn = HalfDotRows*;
HalfDotRows dot_rows_f16_portable, dot_rows_bf16_portable, dot_rows_f16_avx2, dot_rows_bf16_avx2;
// weight is F16 or BF16.
HalfDotRowsFn best_dot_rows_half(DType weight);

// C[m][j] += sum_p A(m, p) * B[p][j] for m < M, j < N, p < P, with A(m, p) = a[m * a_row +
// p * a_col] (so A may be a matrix or a transposed one), B rows b_stride apart, C rows
// c_stride apart. The small products of the chunked DeltaNet (K S, Q S, K^T U): the AVX2 path
// keeps a 4 x 16 block of C in registers across P, where row-by-row axpys would reload and
// store C for every p.
using GemmAcc = void(int64_t M, int64_t N, int64_t P, const float* a, int64_t a_row, int64_t a_col, const float* b,
                     int64_t b_stride, float* c, int64_t c_stride);
using GemmAccFn = GemmAcc*;
GemmAcc gemm_acc_portable, gemm_acc_avx2;
GemmAccFn best_gemm_acc();

// y[i] += a * x[i] for i < n.
using AxpyFn = void (*)(float* y, float a, const float* x, int64_t n);
void axpy_portable(float* y, float a, const float* x, int64_t n);
void axpy_avx2(float* y, float a, const float* x, int64_t n);
AxpyFn best_axpy();

}  // namespace tandem::cpu
