// Block geometry and cache views shared by every backend, kept to C++17 so that CUDA
// sources (nvcc builds them as C++17) use the very same types as the C++20 code.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace tandem {

struct AttentionShape {
  int64_t n_head = 0, n_head_kv = 0, head_dim = 0, n_rot = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-6f;
};

// One layer's K or V cache of a sequence: rows [position][n_head_kv * head_dim] stored in
// `type` (F32, F16, BF16 or a 32-element quant type; head_dim is a multiple of its block),
// in the memory of the backend that runs the layer.
struct KvView {
  uint8_t* data = nullptr;
  DType type = DType::F32;
  size_t row_bytes = 0;
};

// Gated DeltaNet head geometry: n_k key heads and n_v value heads of d_k / d_v dims; value
// head j reads key head j % n_k (GGUF's tiled head order).
struct DeltaNetShape {
  int64_t n_k = 0, n_v = 0, d_k = 0, d_v = 0;
};

}  // namespace tandem
