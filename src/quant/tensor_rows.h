// Rows of a GGUF tensor as float32, for code that needs a few rows in f32 (an embedding
// lookup, a norm weight) without a dequantized copy of the whole tensor. Errors name the
// tensor, so a model with an unsupported quant type says which tensor and which type.
#pragma once

#include <cstdint>

#include "gguf/gguf_file.h"

namespace tandem::quant {

// Throws unless every row of `tensor` can be dequantized; the message names the tensor.
void require_dequantizable(const gguf::TensorInfo& tensor);

// Decodes rows [first_row, first_row + n_rows) into dst (n_rows * dims[0] floats).
void dequantize_rows(const gguf::TensorInfo& tensor, int64_t first_row, int64_t n_rows, float* dst);

}  // namespace tandem::quant
