// KV cache writes (ops.h kv_cache_write): new K or V rows converted to the cache type on
// the device, byte for byte what the CPU's quant::quantize_row writes (model/blocks.cpp
// appends rows with it), so a cache written here reads the same on either backend.
//
// F32/F16: one thread per value (f16 is round-to-nearest-even, as core/half.h). Q8_0 and
// Q4_0: one warp per 32-value block, lane j holding value j. The reference quantizers'
// float operations are reproduced one for one with explicitly rounded intrinsics
// (__fmul_rn, __fadd_rn, __fdiv_rn), because nvcc would otherwise fuse x * id + 8.5 into
// an FMA and round differently from the CPU.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/reduce.cuh"
#include "backend/cuda/ops.h"

namespace tandem::cuda {
namespace {


constexpr int kThreads = 256;

// quantize.cpp's trunc_clamped: truncation toward zero, clamped; NaN gives lo.
__device__ __forceinline__ int trunc_clamped(float v, int lo, int hi) {
  if (!(v >= static_cast<float>(lo))) return lo;
  if (!(v <= static_cast<float>(hi))) return hi;
  return static_cast<int>(v);
}

__device__ __forceinline__ void store_f16(uint8_t* dst, float v) {
  *reinterpret_cast<uint16_t*>(dst) = __half_as_ushort(__float2half_rn(v));
}

template <typename T>
__global__ void write_plain_kernel(const float* rows, int64_t n_rows, int64_t row_elems, const int32_t* positions,
                                   uint8_t* cache, size_t row_bytes, int64_t n_ctx) {
  const int64_t total = n_rows * row_elems;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / row_elems, c = i % row_elems;
    const int64_t pos = positions[r];
    if (pos < 0 || pos >= n_ctx) continue;
    uint8_t* row = cache + static_cast<size_t>(pos) * row_bytes;
    if constexpr (sizeof(T) == 4) {
      reinterpret_cast<float*>(row)[c] = rows[i];
    } else {
      store_f16(row + 2 * c, rows[i]);
    }
  }
}

// Q8_0 block: f16 d, then 32 int8 codes. d = amax / 127, q = round-half-away(x / d).
__device__ void quantize_q8_0(float x, int lane, uint8_t* block) {
  float amax = fmaxf(0.0f, fabsf(x));  // a NaN drops out (std::max keeps the running value)
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(kFullWarp, amax, o));
  const float d = __fdiv_rn(amax, 127.0f);
  const float id = d == 0.0f ? 0.0f : __fdiv_rn(1.0f, d);
  const int q = trunc_clamped(roundf(__fmul_rn(x, id)), -128, 127);
  if (lane == 0) store_f16(block, d);
  block[2 + lane] = static_cast<uint8_t>(static_cast<int8_t>(q));
}

// Q4_0 block: f16 d, then 16 bytes holding value j in the low nibble of byte j and value
// j + 16 in the high one. d = (signed value of largest magnitude, the first on ties) / -8,
// q = trunc(x / d + 8.5) clamped to 0..15.
__device__ void quantize_q4_0(float x, int lane, uint8_t* block) {
  const float ax = fabsf(x);
  float best = ax > 0.0f ? ax : 0.0f;  // zeros and NaNs are never the CPU's pick
  int best_lane = lane;
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(kFullWarp, best, o);
    const int ol = __shfl_xor_sync(kFullWarp, best_lane, o);
    if (ob > best || (ob == best && ol < best_lane)) best = ob, best_lane = ol;
  }
  const float picked = __shfl_sync(kFullWarp, x, best_lane);
  const float max = best > 0.0f ? picked : 0.0f;  // +0 when all are zero, never -0
  const float d = __fdiv_rn(max, -8.0f);
  const float id = d == 0.0f ? 0.0f : __fdiv_rn(1.0f, d);
  const int q = trunc_clamped(__fadd_rn(__fmul_rn(x, id), 8.5f), 0, 15);
  const int high = __shfl_down_sync(kFullWarp, q, 16);
  if (lane == 0) store_f16(block, d);
  if (lane < 16) block[2 + lane] = static_cast<uint8_t>((q & 0x0F) | ((high & 0x0F) << 4));
}

template <bool kQ8>
__global__ void write_quant_kernel(const float* rows, int64_t n_rows, int64_t row_elems, const int32_t* positions,
                                   uint8_t* cache, size_t row_bytes, int64_t n_ctx) {
  constexpr int kBlockBytes = kQ8 ? 34 : 18;
  const int lane = threadIdx.x % 32;
  const int64_t blocks_per_row = row_elems / 32, total = n_rows * blocks_per_row;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t w = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32; w < total; w += warps) {
    const int64_t r = w / blocks_per_row, b = w % blocks_per_row;
    const int64_t pos = positions[r];
    if (pos < 0 || pos >= n_ctx) continue;  // warp-uniform
    const float x = rows[r * row_elems + b * 32 + lane];
    uint8_t* block = cache + static_cast<size_t>(pos) * row_bytes + static_cast<size_t>(b) * kBlockBytes;
    if constexpr (kQ8) {
      quantize_q8_0(x, lane, block);
    } else {
      quantize_q4_0(x, lane, block);
    }
  }
}

}  // namespace

namespace detail {

void launch_kv_cache_write(cudaStream_t stream, const float* rows, int64_t n_rows, int64_t row_elems,
                           const int32_t* positions, const KvCacheView& cache) {
  if (n_rows == 0) return;
  auto* data = static_cast<uint8_t*>(cache.data);
  const int64_t values = n_rows * row_elems;
  switch (cache.type) {
    case DType::F32:
    case DType::F16: {
      const auto grid = static_cast<unsigned>(std::min<int64_t>((values + kThreads - 1) / kThreads, 4096));
      if (cache.type == DType::F32) {
        write_plain_kernel<float><<<grid, kThreads, 0, stream>>>(rows, n_rows, row_elems, positions, data,
                                                                 cache.row_bytes, cache.n_rows);
      } else {
        write_plain_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(rows, n_rows, row_elems, positions, data,
                                                                    cache.row_bytes, cache.n_rows);
      }
      break;
    }
    default: {  // Q8_0, Q4_0 (checked by the caller)
      const int64_t warps_needed = values / 32;
      const auto grid = static_cast<unsigned>(std::min<int64_t>((warps_needed + 7) / 8, 4096));
      if (cache.type == DType::Q8_0) {
        write_quant_kernel<true><<<grid, kThreads, 0, stream>>>(rows, n_rows, row_elems, positions, data,
                                                               cache.row_bytes, cache.n_rows);
      } else {
        write_quant_kernel<false><<<grid, kThreads, 0, stream>>>(rows, n_rows, row_elems, positions, data,
                                                                cache.row_bytes, cache.n_rows);
      }
      break;
    }
  }
  TANDEM_CUDA_CHECK_LAUNCH();
}

}  // namespace detail
}  // namespace tandem::cuda
