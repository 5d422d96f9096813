// Scalar reference dequantization: quantized GGUF blocks -> float32.
// The results are bit-identical to gguf-py's gguf.quants.dequantize (numpy, float32),
// which in turn follows ggml's reference order of float operations; the oracle test
// (tests/quant/quant_oracle_test.cpp) checks this bit for bit.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tandem::quant {

// True for the types dequantize_row handles: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS.
bool can_dequantize(DType type);

// Decodes n elements (n / block_elems whole blocks) from src into dst.
// src needs no particular alignment. Throws tandem::Error when the type is not
// supported or n is negative or not a multiple of the type's block size.
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

}  // namespace tandem::quant
