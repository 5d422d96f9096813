// BF16 weights times BF16 activations with vdpbf16ps (AVX512-BF16): each 32-bit lane adds
// two bf16 x bf16 products (exact in f32) per instruction, twice the multiplies of an f32
// FMA and no widening of the weights. The activations are rounded to bf16 once per matmul
// (round-to-nearest-even, as llama.cpp's BF16 path does), so results differ from the
// f32-activation path (dot_f32.h) by that rounding only.
//
// One source (dot_bf16_dp.cpp), compiled twice into its own namespace (TANDEM_BF16_NS):
//   avx512_bf16    -mavx512f -mavx512vl -mavx512bf16: the EVEX form on 256-bit vectors
//                  (AMD Zen 4/5, Intel Cooper Lake, Sapphire Rapids and later)
//   bf16_emulated  -mavx2, the instruction from SIMDe (tests only), so the kernel's every
//                  line runs on a CPU without AVX512-BF16.
#pragma once

#include <cstdint>

namespace tandem::cpu {

// x[t][i] = bf16(x_f32[t][i]) for t < n_tokens, i < n (rows of length n, contiguous).
void round_to_bf16(const float* x, int64_t n_tokens, int64_t n, uint16_t* out);

// y[t * y_stride] = sum_i w[i] * x[t * x_stride + i] (+ bias) for t < n_tokens; w and x bf16.
using Bf16DotRows = void(const uint16_t* w, const uint16_t* x, int64_t n, int64_t n_tokens, int64_t x_stride, float* y,
                         int64_t y_stride, float bias);
using Bf16DotRowsFn = Bf16DotRows*;
namespace avx512_bf16 {
Bf16DotRows dot_rows_bf16_dp;
}
namespace bf16_emulated {
Bf16DotRows dot_rows_bf16_dp;
}
// The native kernel when this CPU has AVX512-BF16 (and TANDEM_CPU_MAX allows AVX-512), else null.
Bf16DotRowsFn native_dot_rows_bf16_dp();

}  // namespace tandem::cpu
