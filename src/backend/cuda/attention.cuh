// What the two attention kernels share (attention.cu: f32 on the FMA cores, every cache
// type; attention_mma.cu: f16 tensor cores, prompts over f16/quantized caches): the cache
// view, the launch arguments and the cache decoders, so that both read a cache row to the
// same floats.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace tandem::cuda::attn {

enum CacheKind : int { kF32 = 0, kF16 = 1, kQ8_0 = 2, kQ4_0 = 3 };

struct Cache {
  const uint8_t* data;
  size_t row_bytes;
  int kind;
};

struct Args {
  const float* q;
  float* out;
  float* part_o;   // [split][T * H][d] unnormalised outputs (split runs only)
  float* part_ml;  // [split][T * H][2]: running max, sum of exp
  Cache k, v;
  const int32_t* positions;
  int n_tokens, n_head, group, n_kv, split_keys, n_splits;
  float scale;
};

// Head g of cache row pos. Quantized heads start on a block boundary (d % 32 == 0).
template <int D>
__device__ __forceinline__ const uint8_t* head_ptr(const Cache& c, int pos, int g) {
  const uint8_t* row = c.data + static_cast<size_t>(pos) * c.row_bytes;
  switch (c.kind) {
    case kF32: return row + static_cast<size_t>(g) * D * 4;
    case kF16: return row + static_cast<size_t>(g) * D * 2;
    case kQ8_0: return row + static_cast<size_t>(g) * (D / 32) * 34;
    default: return row + static_cast<size_t>(g) * (D / 32) * 18;
  }
}

__device__ __forceinline__ float f16_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(*reinterpret_cast<const uint16_t*>(p)));
}

// Value i of a head, decoded as quant/dequantize.cpp does (d * q in f32).
__device__ __forceinline__ float load1(const uint8_t* h, int kind, int i) {
  switch (kind) {
    case kF32: return reinterpret_cast<const float*>(h)[i];
    case kF16: return f16_at(h + 2 * i);
    case kQ8_0: {
      const uint8_t* b = h + (i / 32) * 34;
      return f16_at(b) * static_cast<float>(static_cast<int8_t>(b[2 + i % 32]));
    }
    default: {  // Q4_0: value j < 16 in the low nibble of byte j, j >= 16 in the high one of j - 16
      const uint8_t* b = h + (i / 32) * 18;
      const int j = i % 32;
      const int q = j < 16 ? (b[2 + j] & 0x0F) : (b[2 + j - 16] >> 4);
      return f16_at(b) * static_cast<float>(q - 8);
    }
  }
}

// Values i..i+3 of a head (i % 4 == 0, so all four lie in one quant block).
__device__ __forceinline__ float4 load4(const uint8_t* h, int kind, int i) {
  switch (kind) {
    case kF32: return *reinterpret_cast<const float4*>(h + 4 * i);
    case kF16: {
      const uint2 u = *reinterpret_cast<const uint2*>(h + 2 * i);
      return make_float4(__half2float(__ushort_as_half(static_cast<uint16_t>(u.x & 0xFFFF))),
                         __half2float(__ushort_as_half(static_cast<uint16_t>(u.x >> 16))),
                         __half2float(__ushort_as_half(static_cast<uint16_t>(u.y & 0xFFFF))),
                         __half2float(__ushort_as_half(static_cast<uint16_t>(u.y >> 16))));
    }
    case kQ8_0: {
      const uint8_t* b = h + (i / 32) * 34;
      const float d = f16_at(b);
      const auto* qs = reinterpret_cast<const int8_t*>(b + 2 + i % 32);
      return make_float4(d * static_cast<float>(qs[0]), d * static_cast<float>(qs[1]), d * static_cast<float>(qs[2]),
                         d * static_cast<float>(qs[3]));
    }
    default: {
      const uint8_t* b = h + (i / 32) * 18;
      const float d = f16_at(b);
      const int j = i % 32;
      const uint8_t* qs = b + 2 + (j < 16 ? j : j - 16);
      const int shift = j < 16 ? 0 : 4;
      return make_float4(d * static_cast<float>(((qs[0] >> shift) & 0x0F) - 8),
                         d * static_cast<float>(((qs[1] >> shift) & 0x0F) - 8),
                         d * static_cast<float>(((qs[2] >> shift) & 0x0F) - 8),
                         d * static_cast<float>(((qs[3] >> shift) & 0x0F) - 8));
    }
  }
}

// A block's rows are (token, query head) pairs of one KV head, token-major: row r of KV
// head g is token r / group, query head g * group + r % group; this is its row of q and out.
__device__ __forceinline__ int64_t query_row(const Args& a, int kv_head, int row) {
  return static_cast<int64_t>(row / a.group) * a.n_head + kv_head * a.group + row % a.group;
}

// Values 4c..4c+3 of a row's query; zeros for a padding row past the call's rows.
template <int D>
__device__ __forceinline__ float4 query_quad(const Args& a, int kv_head, int row, bool valid, int c) {
  if (!valid) return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  return reinterpret_cast<const float4*>(a.q + query_row(a, kv_head, row) * D)[c];
}

// Keys [0, limit) are visible to the row: its token's position and before, within n_kv;
// none for a padding row.
__device__ __forceinline__ int visible_keys(const Args& a, int row, bool valid) {
  return valid ? max(min(a.positions[row / a.group], a.n_kv - 1) + 1, 0) : 0;
}

inline int cache_kind(DType type) {
  switch (type) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::Q8_0: return kQ8_0;
    default: return kQ4_0;  // the caller allows nothing else
  }
}

// The tensor-core kernel (attention_mma.cu) for head_dim in {64, 80, 96, 128, 256}: grid
// (row blocks of kMmaRows rows, KV heads, 1), a as for the FMA kernel with one split.
constexpr int kMmaRows = 64;
constexpr int kMmaMinBlocks = 32;  // fewer row blocks (all KV heads): the FMA kernel, which splits
void launch_attention_mma(const Args& a, dim3 grid, int head_dim, cudaStream_t stream);

}  // namespace tandem::cuda::attn
