// Random quantized blocks for kernel tests: random bytes, with every f16 scale field of a
// block replaced by a finite value (random bytes there could be NaN or inf).
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"

namespace tandem::testing {

// Byte offsets of the f16 scale fields in one block of each type.
inline std::vector<int> f16_fields(DType t) {
  switch (t) {
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: return {0, 2};
    case DType::Q2_K: return {80, 82};
    case DType::Q3_K: return {108};
    case DType::Q6_K: return {208};
    default: return {0};
  }
}

// n_blocks blocks of type t; each scale field gets the f16 bits scale_bits() returns.
template <class ScaleBits>
std::vector<uint8_t> random_blocks(DType t, int64_t n_blocks, std::mt19937& rng, ScaleBits scale_bits) {
  const DTypeInfo& info = dtype_info(t);
  std::vector<uint8_t> bytes(static_cast<size_t>(n_blocks) * info.block_bytes);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  for (int64_t i = 0; i < n_blocks; ++i) {
    for (int off : f16_fields(t)) {
      const uint16_t h = scale_bits();
      std::memcpy(bytes.data() + static_cast<size_t>(i) * info.block_bytes + off, &h, 2);
    }
  }
  return bytes;
}

// Scales uniform in [-0.02, 0.02]: products of such weights with unit activations stay
// in the range real models have.
inline std::vector<uint8_t> random_blocks(DType t, int64_t n_blocks, std::mt19937& rng) {
  std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
  return random_blocks(t, n_blocks, rng, [&] { return f32_to_f16(scale(rng)); });
}

}  // namespace tandem::testing
