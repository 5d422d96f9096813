// Helpers shared by the reference quantizer and dequantizer (not a public header).
#pragma once

// Bit-exactness with the numpy/ggml references needs every a*b+c rounded twice,
// never fused into one FMA. GCC in ISO mode (-std=c++20) does not contract by
// default; clang does unless told not to.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace tandem::quant::detail {

// Copies block i out of a byte stream (alignment-safe).
template <typename Block>
inline Block load_block(const void* src, int64_t i) {
  Block block;
  std::memcpy(&block, static_cast<const uint8_t*>(src) + i * static_cast<int64_t>(sizeof(Block)),
              sizeof(Block));
  return block;
}

template <typename Block>
inline void store_block(void* dst, int64_t i, const Block& block) {
  std::memcpy(static_cast<uint8_t*>(dst) + i * static_cast<int64_t>(sizeof(Block)), &block,
              sizeof(Block));
}

// Blocks in a row of n elements; throws unless n is a non-negative multiple of the block.
inline int64_t blocks_in_row(DType type, int64_t n, const char* what) {
  const DTypeInfo& info = dtype_info(type);
  if (n < 0 || n % info.block_elems != 0) {
    fail("{}: element count {} is not a non-negative multiple of the {} block size {}", what, n,
         info.name, info.block_elems);
  }
  return n / info.block_elems;
}

// Round to nearest, ties to even (ggml's nearest_int). Out-of-range and NaN inputs
// are clamped instead of invoking undefined float->int conversion.
inline int nearest_int(float v) {
  if (!(v > -4194304.0f)) return v != v ? 0 : -4194304;
  if (!(v < 4194304.0f)) return 4194304;
  return static_cast<int>(std::nearbyint(v));
}

}  // namespace tandem::quant::detail
