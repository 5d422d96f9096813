// Kernels of the CUDA matmul and embedding (API and argument checks: matmul.h,
// matmul_host.cpp). Every weight block is decoded by backend/cuda/quant_decode.h, whose
// functions a CPU test proves bit-identical to the reference dequantizer.
//
// Decode (T <= kMatvecMaxTokens): a decode step reads every weight byte once, so the
// mat-vec must stream weights at memory speed. The activations are first quantized on the
// device to 8-bit blocks of 32 (codes, d, d * sum), then each group of `lanes` threads of a
// warp (32, or 16 / 8 for short rows so no lane idles) owns one output row: lane j takes
// the row's 32-element sub-blocks j, j + lanes, ..., so a warp reads consecutive bytes
// of a row, decodes each sub-block once to int8 codes + scales and takes its __dp4a dot
// product with every token column (all T columns per weight read), then the lanes' sums
// meet by shuffles. Four warps per CTA; many rows keep enough bytes in flight.
//
// Prompts (T > kMatvecMaxTokens), two paths with the same f16 x f16 -> f32 products:
//   - tile GEMM (T <= tile_gemm_max_tokens()): one CTA computes 64 weight rows x 64
//     tokens on the tensor cores (mma.cuh); per K step of 128 its threads decode the
//     weight sub-blocks (quant_decode.h, 4 lanes on 4 consecutive sub-blocks of a row) and
//     the f32 activations straight to f16 tiles in shared memory. Weights cross memory once
//     per 64 tokens as stored (~0.6 byte/weight), nothing is written but y;
//   - cuBLAS: tiles of weight rows dequantized to f16 in scratch, x converted to f16 once,
//     cublasGemmEx. Each weight costs a 2-byte write and read on top of its decode, which
//     a large T amortises, and cuBLAS's GEMM is faster per flop than the tile kernel.
// Where one path overtakes the other depends on the GPU (its bandwidth against its
// tensor-core rate): CudaMatmul.SpeedReport times both at T = 16..512.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/quant_decode.h"

namespace tandem::cuda::detail {
namespace {

constexpr int kWarps = 4;  // warps per mat-vec CTA
constexpr unsigned kFullMask = 0xFFFFFFFFu;

template <DType T>
using TypeTag = std::integral_constant<DType, T>;

// Calls f(TypeTag<T>{}) for a quantized weight type; false when the type is not one.
template <class F>
bool dispatch_quant(DType type, F&& f) {
  switch (type) {
    case DType::Q4_0: f(TypeTag<DType::Q4_0>{}); return true;
    case DType::Q4_1: f(TypeTag<DType::Q4_1>{}); return true;
    case DType::Q5_0: f(TypeTag<DType::Q5_0>{}); return true;
    case DType::Q5_1: f(TypeTag<DType::Q5_1>{}); return true;
    case DType::Q8_0: f(TypeTag<DType::Q8_0>{}); return true;
    case DType::Q2_K: f(TypeTag<DType::Q2_K>{}); return true;
    case DType::Q3_K: f(TypeTag<DType::Q3_K>{}); return true;
    case DType::Q4_K: f(TypeTag<DType::Q4_K>{}); return true;
    case DType::Q5_K: f(TypeTag<DType::Q5_K>{}); return true;
    case DType::Q6_K: f(TypeTag<DType::Q6_K>{}); return true;
    case DType::IQ4_NL: f(TypeTag<DType::IQ4_NL>{}); return true;
    case DType::IQ4_XS: f(TypeTag<DType::IQ4_XS>{}); return true;
    default: return false;
  }
}

template <class F>
bool dispatch_float(DType type, F&& f) {
  switch (type) {
    case DType::F32: f(TypeTag<DType::F32>{}); return true;
    case DType::F16: f(TypeTag<DType::F16>{}); return true;
    case DType::BF16: f(TypeTag<DType::BF16>{}); return true;
    default: return false;
  }
}

// Token columns per launch are rounded up to a compiled count (runtime T guards the rest).
template <class F>
void dispatch_tokens(int64_t tokens, F&& f) {
  if (tokens <= 1) f(std::integral_constant<int, 1>{});
  else if (tokens <= 2) f(std::integral_constant<int, 2>{});
  else if (tokens <= 4) f(std::integral_constant<int, 4>{});
  else f(std::integral_constant<int, 8>{});
}

[[noreturn]] void fail_type(const char* what) { fail_cuda(cudaErrorInvalidValue, what, __FILE__, __LINE__); }

// The weight matrix of a slot (expert ids[slot], or the only one); null for a bad id.
__device__ inline const uint8_t* slot_matrix(const MatvecArgs& a, int64_t slot) {
  if (a.ids == nullptr) return a.w;
  const int32_t e = a.ids[slot] - a.id_base;
  if (e < 0 || e >= a.n_matrices) return nullptr;
  return a.w + static_cast<uint64_t>(e) * a.matrix_bytes;
}

// One warp per block of 32 activations: codes round(x / d), d = max|x| / 127, and d * sum.
__global__ void quantize_activations_kernel(const float* __restrict__ x, int64_t n_blocks, int8_t* __restrict__ aq,
                                            float2* __restrict__ ad) {
  const int64_t block = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (block >= n_blocks) return;  // uniform per warp
  const float v = x[block * 32 + lane];
  float amax = fabsf(v);
  for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(kFullMask, amax, off));
  const float d = act_scale(amax);
  const int q = act_code(v, d);
  int sum = q;
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(kFullMask, sum, off);
  aq[block * 32 + lane] = static_cast<int8_t>(q);
  if (lane == 0) ad[block] = make_float2(d, d * static_cast<float>(sum));
}

// Integer mat-vec: `lanes` (1 << lanes_log2) threads per output row, kMaxT token columns.
template <DType kT, int kMaxT>
__global__ void __launch_bounds__(kWarps * 32) matvec_q8_kernel(MatvecArgs a, int lanes_log2) {
  using Q = QuantType<kT>;
  const int lane = threadIdx.x % 32;
  const int lanes = 1 << lanes_log2;
  const int part = lane & (lanes - 1);
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32) * (32 >> lanes_log2) +
                      (lane >> lanes_log2);
  const int64_t slot = blockIdx.y;
  const int tokens = static_cast<int>(a.tokens);
  const int64_t n_subs = a.n_in / 32;
  const uint8_t* w = slot_matrix(a, slot);
  const int64_t act_row = slot * a.x_step / a.x_share;
  const auto* aq = reinterpret_cast<const uint4*>(a.aq);
  const auto* ad = reinterpret_cast<const float2*>(a.ad);

  float acc[kMaxT];
#pragma unroll
  for (int t = 0; t < kMaxT; ++t) acc[t] = 0.0f;
  if (w != nullptr && row < a.n_out) {
    const uint8_t* wrow = w + static_cast<uint64_t>(row) * a.row_bytes;
    for (int64_t s = part; s < n_subs; s += lanes) {
      SubBlock sb;
      Q::decode(wrow + (s / Q::kSubs) * sizeof(typename Q::Block), static_cast<int>(s % Q::kSubs), sb);
#pragma unroll
      for (int t = 0; t < kMaxT; ++t) {
        if (t < tokens) {
          const int64_t blk = (act_row + t) * n_subs + s;  // 32 codes = two uint4
          const uint4 lo = aq[2 * blk], hi = aq[2 * blk + 1];
          const uint32_t codes[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
          const float2 ds = ad[blk];
          acc[t] += dot_sub<kT>(sb, codes, ds.x, ds.y);
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxT; ++t) {
    for (int off = lanes / 2; off > 0; off >>= 1) acc[t] += __shfl_xor_sync(kFullMask, acc[t], off);
  }
  if (row < a.n_out && part == 0) {
    const float b = a.bias != nullptr ? a.bias[row] : 0.0f;
#pragma unroll
    for (int t = 0; t < kMaxT; ++t) {
      if (t < tokens) a.y[(slot * tokens + t) * a.n_out + row] = w != nullptr ? acc[t] + b : NAN;
    }
  }
}

// Float mat-vec (F32 / F16 / BF16 weights, f32 activations): one warp per output row.
template <DType kT, int kMaxT>
__global__ void __launch_bounds__(kWarps * 32) matvec_float_kernel(MatvecArgs a) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int64_t slot = blockIdx.y;
  const int tokens = static_cast<int>(a.tokens);
  const uint8_t* w = slot_matrix(a, slot);
  const float* x = a.x + (slot * a.x_step / a.x_share) * a.n_in;

  float acc[kMaxT];
#pragma unroll
  for (int t = 0; t < kMaxT; ++t) acc[t] = 0.0f;
  if (w != nullptr && row < a.n_out) {
    const uint8_t* wrow = w + static_cast<uint64_t>(row) * a.row_bytes;
    for (int64_t i = lane; i < a.n_in; i += 32) {
      const float wv = float_row_value<kT>(wrow, i);
#pragma unroll
      for (int t = 0; t < kMaxT; ++t) {
        if (t < tokens) acc[t] += wv * x[t * a.n_in + i];
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxT; ++t) {
    for (int off = 16; off > 0; off >>= 1) acc[t] += __shfl_xor_sync(kFullMask, acc[t], off);
  }
  if (row < a.n_out && lane == 0) {
    const float b = a.bias != nullptr ? a.bias[row] : 0.0f;
#pragma unroll
    for (int t = 0; t < kMaxT; ++t) {
      if (t < tokens) a.y[(slot * tokens + t) * a.n_out + row] = w != nullptr ? acc[t] + b : NAN;
    }
  }
}

// One thread per sub-block: 32 weights -> 32 f16, stored as four 16-byte words.
template <DType kT>
__global__ void dequantize_f16_kernel(const uint8_t* __restrict__ w, uint64_t row_bytes, int64_t row0, int64_t n_rows,
                                      int64_t n_subs, __half* __restrict__ out) {
  using Q = QuantType<kT>;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * n_subs) return;
  const int64_t r = idx / n_subs, s = idx % n_subs;
  float v[32];
  decode_sub<kT>(w + static_cast<uint64_t>(row0 + r) * row_bytes + (s / Q::kSubs) * sizeof(typename Q::Block),
                 static_cast<int>(s % Q::kSubs), v);
  uint4 packed[4];
  auto* h2 = reinterpret_cast<__half2*>(packed);
#pragma unroll
  for (int j = 0; j < 16; ++j) h2[j] = __floats2half2_rn(v[2 * j], v[2 * j + 1]);
  auto* dst = reinterpret_cast<uint4*>(out + idx * 32);  // row r, sub s: [r][n_subs * 32]
#pragma unroll
  for (int k = 0; k < 4; ++k) dst[k] = packed[k];
}

// The tile GEMM (see the top): y[t][o] for 64 rows o0.. and 64 tokens t0.. . Warp w owns
// rows 16w..16w+15 (the mma's A operand, weights) against all 64 tokens (8 B operands).
constexpr int kTileRows = 64, kTileTokens = 64, kTileK = 128, kTileStride = kTileK + 8, kTileThreads = 128;

template <DType kT>
__global__ void __launch_bounds__(kTileThreads)
    tile_gemm_kernel(const uint8_t* __restrict__ w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
                     const float* __restrict__ x, int64_t n_tokens, float* __restrict__ y) {
  using Q = QuantType<kT>;
  constexpr int kSubsPerStep = kTileK / 32, kQuadsPerRow = kTileK / 4;
  __shared__ __align__(16) __half ws[kTileRows * kTileStride];
  __shared__ __align__(16) __half xs[kTileTokens * kTileStride];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int64_t o0 = static_cast<int64_t>(blockIdx.x) * kTileRows, t0 = static_cast<int64_t>(blockIdx.y) * kTileTokens;
  const int64_t n_subs = n_in / 32;

  float acc[kTileTokens / 8][4];
#pragma unroll
  for (int n = 0; n < kTileTokens / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

  for (int64_t k0 = 0; k0 < n_in; k0 += kTileK) {
    // Weights: 64 rows x 4 sub-blocks, two per thread; zeros past the matrix.
#pragma unroll
    for (int i = 0; i < kTileRows * kSubsPerStep / kTileThreads; ++i) {
      const int slot = tid + i * kTileThreads, r = slot / kSubsPerStep, j = slot % kSubsPerStep;
      const int64_t sub = k0 / 32 + j;
      float v[32];
      if (o0 + r < n_out && sub < n_subs) {
        decode_sub<kT>(w + static_cast<uint64_t>(o0 + r) * row_bytes + (sub / Q::kSubs) * sizeof(typename Q::Block),
                       static_cast<int>(sub % Q::kSubs), v);
      } else {
#pragma unroll
        for (int e = 0; e < 32; ++e) v[e] = 0.0f;
      }
      __half* dst = ws + r * kTileStride + 32 * j;
#pragma unroll
      for (int e = 0; e < 32; e += 4) store4(dst + e, make_float4(v[e], v[e + 1], v[e + 2], v[e + 3]));
    }
    // Activations: 64 tokens x 128 values, consecutive threads on consecutive quads of a row.
    for (int i = tid; i < kTileTokens * kQuadsPerRow; i += kTileThreads) {
      const int tok = i / kQuadsPerRow, q = i % kQuadsPerRow;
      const int64_t k = k0 + 4 * q;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (t0 + tok < n_tokens && k < n_in) v = *reinterpret_cast<const float4*>(x + (t0 + tok) * n_in + k);
      store4(xs + tok * kTileStride + 4 * q, v);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK / 16; ++kk) {
      const __half* wa = ws + (warp * 16 + g) * kTileStride + kk * 16 + 2 * t;
      const __half* wb = wa + 8 * kTileStride;
      const uint32_t af[4] = {word_at(wa), word_at(wb), word_at(wa + 8), word_at(wb + 8)};
#pragma unroll
      for (int n = 0; n < kTileTokens / 8; ++n) {
        const __half* xr = xs + (n * 8 + g) * kTileStride + kk * 16 + 2 * t;
        mma_16x8x16(acc[n], af, word_at(xr), word_at(xr + 8));
      }
    }
    __syncthreads();  // the next step overwrites both tiles
  }

  const int64_t row_a = o0 + warp * 16 + g, row_b = row_a + 8;
#pragma unroll
  for (int n = 0; n < kTileTokens / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int64_t tok = t0 + n * 8 + 2 * t + e;
      if (tok >= n_tokens) continue;
      if (row_a < n_out) y[tok * n_out + row_a] = acc[n][e];
      if (row_b < n_out) y[tok * n_out + row_b] = acc[n][2 + e];
    }
  }
}

__global__ void convert_kernel(const float* __restrict__ x, int64_t n, void* __restrict__ out, bool half) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (half) {
      static_cast<__half*>(out)[i] = __float2half_rn(x[i]);
    } else {
      static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(x[i]);
    }
  }
}

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t total, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] += bias[i % n];
  }
}

// Embedding, quantized table: blockIdx.x = token, one thread per sub-block of its row.
template <DType kT>
__global__ void embed_quant_kernel(const uint8_t* __restrict__ table, uint64_t row_bytes, int64_t vocab, int64_t n_subs,
                                   const int32_t* __restrict__ tokens, float* __restrict__ out) {
  using Q = QuantType<kT>;
  const int64_t i = blockIdx.x;
  const int64_t s = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (s >= n_subs) return;
  const int32_t token = tokens[i];
  auto* dst = reinterpret_cast<float4*>(out + (i * n_subs + s) * 32);
  if (token < 0 || token >= vocab) {
    for (int k = 0; k < 8; ++k) dst[k] = make_float4(NAN, NAN, NAN, NAN);
    return;
  }
  float v[32];
  decode_sub<kT>(table + static_cast<uint64_t>(token) * row_bytes + (s / Q::kSubs) * sizeof(typename Q::Block),
                 static_cast<int>(s % Q::kSubs), v);
#pragma unroll
  for (int k = 0; k < 8; ++k) dst[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
}

template <DType kT>
__global__ void embed_float_kernel(const uint8_t* __restrict__ table, uint64_t row_bytes, int64_t vocab, int64_t dim,
                                   const int32_t* __restrict__ tokens, float* __restrict__ out) {
  const int64_t i = blockIdx.x;
  const int64_t e = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (e >= dim) return;
  const int32_t token = tokens[i];
  out[i * dim + e] = token < 0 || token >= vocab ? NAN : float_row_value<kT>(table + static_cast<uint64_t>(token) * row_bytes, e);
}

unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);  // grid-stride beyond
}

}  // namespace

void quantize_activations(cudaStream_t stream, const float* x, int64_t rows, int64_t n_in, int8_t* aq, float* ad) {
  const int64_t n_blocks = rows * (n_in / 32);
  if (n_blocks == 0) return;
  constexpr int kThreads = 256;  // 8 blocks of 32 per CTA
  const int64_t ctas = (n_blocks + kThreads / 32 - 1) / (kThreads / 32);
  quantize_activations_kernel<<<static_cast<unsigned>(ctas), kThreads, 0, stream>>>(x, n_blocks, aq,
                                                                                     reinterpret_cast<float2*>(ad));
  TANDEM_CUDA_CHECK_LAUNCH();
}

void matvec(cudaStream_t stream, const MatvecArgs& a) {
  if (a.n_out == 0 || a.slots == 0) return;
  const bool quantized = dispatch_quant(a.type, [&](auto type) {
    constexpr DType kT = decltype(type)::value;
    // The fewest lanes per row (of 8, 16, 32) that cover the row's sub-blocks in one pass.
    const int64_t n_subs = a.n_in / 32;
    const int lanes_log2 = n_subs > 16 ? 5 : n_subs > 8 ? 4 : 3;
    const int64_t rows_per_cta = kWarps * (32 >> lanes_log2);
    const dim3 grid(static_cast<unsigned>((a.n_out + rows_per_cta - 1) / rows_per_cta), static_cast<unsigned>(a.slots));
    dispatch_tokens(a.tokens, [&](auto max_t) {
      matvec_q8_kernel<kT, decltype(max_t)::value><<<grid, kWarps * 32, 0, stream>>>(a, lanes_log2);
    });
  });
  if (!quantized) {
    const bool is_float = dispatch_float(a.type, [&](auto type) {
      constexpr DType kT = decltype(type)::value;
      const dim3 grid(static_cast<unsigned>((a.n_out + kWarps - 1) / kWarps), static_cast<unsigned>(a.slots));
      dispatch_tokens(a.tokens, [&](auto max_t) {
        matvec_float_kernel<kT, decltype(max_t)::value><<<grid, kWarps * 32, 0, stream>>>(a);
      });
    });
    if (!is_float) fail_type("matvec: unsupported weight type");
  }
  TANDEM_CUDA_CHECK_LAUNCH();
}

void dequantize_rows_f16(cudaStream_t stream, DType type, const uint8_t* w, uint64_t row_bytes, int64_t row0,
                         int64_t n_rows, int64_t n_in, void* out) {
  const int64_t n_subs = n_in / 32, total = n_rows * n_subs;
  if (total == 0) return;
  constexpr int kThreads = 256;
  const bool ok = dispatch_quant(type, [&](auto tag) {
    constexpr DType kT = decltype(tag)::value;
    dequantize_f16_kernel<kT><<<static_cast<unsigned>((total + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        w, row_bytes, row0, n_rows, n_subs, static_cast<__half*>(out));
  });
  if (!ok) fail_type("dequantize_rows_f16: unsupported weight type");
  TANDEM_CUDA_CHECK_LAUNCH();
}

void tile_gemm(cudaStream_t stream, DType type, const uint8_t* w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
               const float* x, int64_t n_tokens, float* y) {
  if (n_out == 0 || n_tokens == 0) return;
  const dim3 grid(static_cast<unsigned>((n_out + kTileRows - 1) / kTileRows),
                  static_cast<unsigned>((n_tokens + kTileTokens - 1) / kTileTokens));
  const bool ok = dispatch_quant(type, [&](auto tag) {
    constexpr DType kT = decltype(tag)::value;
    tile_gemm_kernel<kT><<<grid, kTileThreads, 0, stream>>>(w, row_bytes, n_in, n_out, x, n_tokens, y);
  });
  if (!ok) fail_type("tile_gemm: unsupported weight type");
  TANDEM_CUDA_CHECK_LAUNCH();
}

void convert_activations(cudaStream_t stream, const float* x, int64_t n, void* out, bool half) {
  if (n == 0) return;
  convert_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, n, out, half);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void add_bias(cudaStream_t stream, float* y, const float* bias, int64_t rows, int64_t n) {
  if (rows * n == 0) return;
  add_bias_kernel<<<grid_for(rows * n, 256), 256, 0, stream>>>(y, bias, rows * n, n);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void embed_rows(cudaStream_t stream, DType type, const uint8_t* table, uint64_t row_bytes, int64_t vocab, int64_t dim,
                const int32_t* tokens, int64_t n, float* out) {
  if (n == 0 || dim == 0) return;
  constexpr int kThreads = 128;
  const bool quantized = dispatch_quant(type, [&](auto tag) {
    constexpr DType kT = decltype(tag)::value;
    const int64_t n_subs = dim / 32;
    const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>((n_subs + kThreads - 1) / kThreads));
    embed_quant_kernel<kT><<<grid, kThreads, 0, stream>>>(table, row_bytes, vocab, n_subs, tokens, out);
  });
  if (!quantized) {
    const bool is_float = dispatch_float(type, [&](auto tag) {
      constexpr DType kT = decltype(tag)::value;
      const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>((dim + kThreads - 1) / kThreads));
      embed_float_kernel<kT><<<grid, kThreads, 0, stream>>>(table, row_bytes, vocab, dim, tokens, out);
    });
    if (!is_float) fail_type("embed: unsupported table type");
  }
  TANDEM_CUDA_CHECK_LAUNCH();
}

}  // namespace tandem::cuda::detail
