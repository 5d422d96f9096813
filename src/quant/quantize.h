// Scalar reference quantization: float32 -> GGUF blocks.
//
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16 and BF16 produce exactly the bytes gguf-py's
// gguf.quants.quantize produces (which matches ggml's *_ref quantizers). Q4_K, Q5_K,
// Q6_K and Q8_K follow llama.cpp's reference (no importance matrix) algorithms, so the
// files we write look like those llama-quantize writes.
//
// Inputs are expected to be finite. Blocks whose scale overflows or underflows f16
// (|x| beyond ~65504*8, or absmax below ~1e-38) give the same ill-defined codes as
// the references do; no exception is thrown for them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace tandem::quant {

// True for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K.
bool can_quantize(DType type);

// Encodes n floats (a multiple of the type's block size) into dst and returns the bytes
// written: n / block_elems * block_bytes. dst needs no particular alignment. Throws
// tandem::Error for an unsupported type or a bad n.
size_t quantize_row(DType type, const float* src, void* dst, int64_t n);

}  // namespace tandem::quant
