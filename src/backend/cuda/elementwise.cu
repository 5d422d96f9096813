// Elementwise ops (ops.h): SwiGLU, add, scale, the sigmoid output gate and row gathers. Grid-stride
// loops over at most a few thousand blocks; the math is the CPU's (silu(g) = g / (1 +
// e^-g), sigmoid(g) = 1 / (1 + e^-g)) with expf (no fast-math).
#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"

namespace tandem::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096));
}

__device__ __forceinline__ int64_t first_index() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

__global__ void swiglu_kernel(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = first_index(); i < n; i += grid_step()) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_step()) x[i] += y[i];
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_step()) x[i] *= s;
}

__global__ void sigmoid_gate_kernel(float* o, int64_t n_rows, int64_t n, const float* g, int64_t g_stride) {
  for (int64_t i = first_index(); i < n_rows * n; i += grid_step()) {
    const int64_t r = i / n, c = i % n;
    o[i] *= 1.0f / (1.0f + expf(-g[r * g_stride + c]));
  }
}

__global__ void gather_rows_kernel(const float* src, const int32_t* rows, int64_t n_rows, int64_t n, float* dst) {
  for (int64_t i = first_index(); i < n_rows * n; i += grid_step()) {
    const int64_t r = i / n, c = i % n;
    const int32_t from = rows[r];
    dst[i] = from >= 0 ? src[static_cast<int64_t>(from) * n + c] : 0.0f;
  }
}

}  // namespace

namespace detail {

void launch_gather_rows(cudaStream_t stream, const float* src, const int32_t* rows, int64_t n_rows, int64_t n,
                        float* dst) {
  if (n_rows * n == 0) return;
  gather_rows_kernel<<<grid_for(n_rows * n), kThreads, 0, stream>>>(src, rows, n_rows, n, dst);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_swiglu(cudaStream_t stream, const float* gate, const float* up, int64_t n, float* out) {
  if (n == 0) return;
  swiglu_kernel<<<grid_for(n), kThreads, 0, stream>>>(gate, up, n, out);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_add(cudaStream_t stream, float* x, const float* y, int64_t n) {
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_scale(cudaStream_t stream, float* x, float s, int64_t n) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, s, n);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_sigmoid_gate(cudaStream_t stream, float* o, int64_t n_rows, int64_t n, const float* g,
                         int64_t g_stride) {
  if (n_rows * n == 0) return;
  sigmoid_gate_kernel<<<grid_for(n_rows * n), kThreads, 0, stream>>>(o, n_rows, n, g, g_stride);
  TANDEM_CUDA_CHECK_LAUNCH();
}

}  // namespace detail
}  // namespace tandem::cuda
