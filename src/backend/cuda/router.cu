// MoE routing, the expert combine, the shared-expert gate and greedy argmax (ops.h).
//
// moe_route: one warp per token. The E <= 512 logits sit in registers (16 per lane at
// most), softmax is two warp reductions, and each of the k choices is one more warp
// argmax (ties to the lower index, as the CPU's scan), after which the winner's lane
// marks it taken. The choice order and the order of the renormalising sum are the CPU's.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/reduce.cuh"

namespace tandem::cuda {
namespace {



// (value, index) pairs: the larger value wins, equal values go to the lower index.
__device__ __forceinline__ void take_better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
  for (int o = 16; o > 0; o >>= 1) take_better(v, i, __shfl_xor_sync(kFullWarp, v, o), __shfl_xor_sync(kFullWarp, i, o));
}

constexpr int kRouteWarps = 4;

template <int kPerLane>
__global__ void __launch_bounds__(kRouteWarps * 32)
    moe_route_kernel(const float* logits, int n_tokens, int n_expert, int k, bool renormalize, int32_t* ids,
                     float* weights) {
  const int lane = threadIdx.x % 32;
  const int t = blockIdx.x * kRouteWarps + threadIdx.x / 32;
  if (t >= n_tokens) return;  // the whole warp leaves together
  const float* row = logits + static_cast<int64_t>(t) * n_expert;
  float p[kPerLane];  // expert lane + 32 j
  float m = -INFINITY;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = lane + 32 * j;
    p[j] = e < n_expert ? row[e] : -INFINITY;
    m = fmaxf(m, p[j]);
  }
  m = warp_max(m);
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    p[j] = lane + 32 * j < n_expert ? expf(p[j] - m) : 0.0f;
    sum += p[j];
  }
  sum = warp_sum(sum);
  // Probabilities are >= 0, so -1 marks "not a candidate" (absent or already chosen).
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) p[j] = lane + 32 * j < n_expert ? p[j] / sum : -1.0f;

  int my_id = 0;        // lane r keeps choice r
  float my_weight = 0.0f;
  float chosen_sum = 0.0f;
  for (int r = 0; r < k; ++r) {
    float best = -1.0f;
    int best_id = INT_MAX;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (p[j] > best) {  // j ascending: the lane's lowest index wins its ties
        best = p[j];
        best_id = lane + 32 * j;
      }
    }
    warp_argmax(best, best_id);
    if (best_id == INT_MAX) best_id = 0, best = 0.0f;  // only NaN left: keep the id in range
    if (lane == r) my_id = best_id, my_weight = best;
    chosen_sum += best;  // warp-uniform, in order of choice as the CPU sums
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (lane + 32 * j == best_id) p[j] = -1.0f;
    }
  }
  if (lane < k) {
    const int64_t at = static_cast<int64_t>(t) * k + lane;
    ids[at] = my_id;
    weights[at] = renormalize ? my_weight / fmaxf(chosen_sum, 6.1035e-5f) : my_weight;
  }
}

// One token per blockIdx.x, 256 columns per blockIdx.y.
__global__ void moe_weighted_sum_kernel(const float* expert_out, const int32_t* rows, const float* weights, int k,
                                        int64_t n, float* out) {
  const int64_t t = blockIdx.x, c = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= n) return;
  float acc = 0.0f;
  for (int j = 0; j < k; ++j) {
    const int64_t slot = t * k + j;
    const int64_t row = rows != nullptr ? rows[slot] : slot;
    acc += weights[slot] * expert_out[row * n + c];
  }
  out[t * n + c] = acc;
}

__global__ void shared_expert_gate_kernel(const float* m, const float* gate_w, const float* shared, int64_t n,
                                          float* out) {
  const int64_t base = blockIdx.x * n;
  float dot = 0.0f;
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) dot += gate_w[c] * m[base + c];
  dot = block_sum(dot);
  const float gate = 1.0f / (1.0f + expf(-dot));
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) out[base + c] += gate * shared[base + c];
}

constexpr int kArgmaxThreads = 1024;

__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(const float* logits, int64_t n, int32_t* out) {
  const float* row = logits + blockIdx.x * n;
  float best = -INFINITY;
  int best_id = INT_MAX;  // stays so only for a thread that saw nothing but NaNs
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = row[i];
    if (v > best || (v == best && best_id == INT_MAX)) {  // i ascending: the first of equals stays
      best = v;
      best_id = static_cast<int>(i);
    }
  }
  warp_argmax(best, best_id);
  __shared__ float warp_best[kArgmaxThreads / 32];
  __shared__ int warp_id[kArgmaxThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_best[warp] = best, warp_id[warp] = best_id;
  __syncthreads();
  if (warp != 0) return;
  best = lane < static_cast<int>(blockDim.x / 32) ? warp_best[lane] : -INFINITY;
  best_id = lane < static_cast<int>(blockDim.x / 32) ? warp_id[lane] : INT_MAX;
  warp_argmax(best, best_id);
  // std::max_element never replaces a NaN at index 0 (nothing compares greater).
  if (lane == 0) out[blockIdx.x] = (best_id == INT_MAX || isnan(row[0])) ? 0 : best_id;
}

}  // namespace

namespace detail {

void launch_moe_route(cudaStream_t stream, const float* logits, int64_t n_tokens, int64_t n_expert, int64_t k,
                      bool renormalize, int32_t* ids, float* weights) {
  if (n_tokens == 0) return;
  const auto blocks = static_cast<unsigned>((n_tokens + kRouteWarps - 1) / kRouteWarps);
  const int T = static_cast<int>(n_tokens), E = static_cast<int>(n_expert), K = static_cast<int>(k);
  if (n_expert <= 128) {
    moe_route_kernel<4><<<blocks, kRouteWarps * 32, 0, stream>>>(logits, T, E, K, renormalize, ids, weights);
  } else if (n_expert <= 256) {
    moe_route_kernel<8><<<blocks, kRouteWarps * 32, 0, stream>>>(logits, T, E, K, renormalize, ids, weights);
  } else {
    moe_route_kernel<16><<<blocks, kRouteWarps * 32, 0, stream>>>(logits, T, E, K, renormalize, ids, weights);
  }
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_moe_weighted_sum(cudaStream_t stream, const float* expert_out, const int32_t* rows,
                             const float* weights, int64_t n_tokens, int64_t k, int64_t n, float* out) {
  if (n_tokens == 0 || n == 0) return;
  const dim3 grid(static_cast<unsigned>(n_tokens), static_cast<unsigned>((n + 255) / 256));
  moe_weighted_sum_kernel<<<grid, 256, 0, stream>>>(expert_out, rows, weights, static_cast<int>(k), n, out);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_shared_expert_gate_add(cudaStream_t stream, const float* m, const float* gate_w, const float* shared,
                                   int64_t n_tokens, int64_t n, float* out) {
  if (n_tokens == 0) return;
  shared_expert_gate_kernel<<<static_cast<unsigned>(n_tokens), 256, 0, stream>>>(m, gate_w, shared, n, out);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_argmax_rows(cudaStream_t stream, const float* logits, int64_t n_rows, int64_t n, int32_t* out) {
  if (n_rows == 0) return;
  argmax_kernel<<<static_cast<unsigned>(n_rows), kArgmaxThreads, 0, stream>>>(logits, n, out);
  TANDEM_CUDA_CHECK_LAUNCH();
}

}  // namespace detail
}  // namespace tandem::cuda
