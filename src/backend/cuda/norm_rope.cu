// Row norms (RMS, fused residual add + RMS, L2) and NeoX RoPE (ops.h). One block per row
// for the norms: a row is at most a few thousand floats, read twice (sum of squares, then
// scale) and the second read hits L1. RoPE: one block per token, the token's angles
// computed once in shared memory and used by every head.
#include <cuda_runtime.h>

#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/reduce.cuh"

namespace tandem::cuda {
namespace {

// Threads per row block: one per value up to 256 (head-sized rows use a warp or a few).
int row_threads(int64_t n) {
  const int64_t warps = (n + 31) / 32;
  return static_cast<int>(warps >= 8 ? 256 : warps * 32);
}

__global__ void rms_norm_kernel(const float* x, int64_t x_stride, const float* __restrict__ w, int n, float eps,
                                float* out, int64_t out_stride) {
  const float* xr = x + blockIdx.x * x_stride;
  float* o = out + blockIdx.x * out_stride;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i] * xr[i];
  sum = block_sum(sum);  // its barrier also orders every read of x before an in-place write
  const float s = 1.0f / sqrtf(sum / static_cast<float>(n) + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * s * w[i];
}

__global__ void add_rms_norm_kernel(float* x, const float* y, const float* __restrict__ w, int n, float eps,
                                    float* out) {
  float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  const float* yr = y + static_cast<int64_t>(blockIdx.x) * n;
  float* o = out + static_cast<int64_t>(blockIdx.x) * n;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = xr[i] + yr[i];
    xr[i] = v;
    sum += v * v;
  }
  sum = block_sum(sum);
  const float s = 1.0f / sqrtf(sum / static_cast<float>(n) + eps);
  // Each thread rereads the values it wrote itself: no barrier needed for them.
  for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * s * w[i];
}

__global__ void l2_norm_kernel(const float* x, int64_t x_stride, int n, float eps, float scale, float* out,
                               int64_t out_stride) {
  const float* xr = x + blockIdx.x * x_stride;
  float* o = out + blockIdx.x * out_stride;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i] * xr[i];
  sum = block_sum(sum);
  const float s = scale / fmaxf(sqrtf(sum), eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * s;
}

constexpr int kMaxRotPairs = 128;  // n_rot <= 256

// The angles as the CPU computes them (backend/rope.h): f32 steps from theta_0 = p by the
// host's theta_scale (powf there, so both sides start from the same bits), then cosf/sinf
// (the device's are within 2 ulp of glibc's). The rotation uses unfused multiplies and adds,
// also as the CPU.
__global__ void rope_neox_kernel(float* x, int n_heads, int head_dim, int n_rot, const int32_t* positions,
                                 float theta_scale) {
  __shared__ float cos_s[kMaxRotPairs], sin_s[kMaxRotPairs];
  const int t = blockIdx.x, half = n_rot / 2;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float theta = static_cast<float>(positions[t]);
    for (int j = 0; j < i; ++j) theta = __fmul_rn(theta, theta_scale);
    cos_s[i] = cosf(theta);
    sin_s[i] = sinf(theta);
  }
  __syncthreads();
  float* xt = x + static_cast<int64_t>(t) * n_heads * head_dim;
  for (int idx = threadIdx.x; idx < n_heads * half; idx += blockDim.x) {
    const int h = idx / half, i = idx % half;
    float* v = xt + h * head_dim;
    const float a = v[i], b = v[i + half], c = cos_s[i], s = sin_s[i];
    v[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    v[i + half] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
  }
}

}  // namespace

namespace detail {

void launch_rms_norm(cudaStream_t stream, const float* x, int64_t x_stride, const float* w, int64_t n_rows,
                     int64_t n, float eps, float* out, int64_t out_stride) {
  if (n_rows == 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(n_rows), row_threads(n), 0, stream>>>(x, x_stride, w, static_cast<int>(n),
                                                                                eps, out, out_stride);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_add_rms_norm(cudaStream_t stream, float* x, const float* y, const float* w, int64_t n_rows, int64_t n,
                         float eps, float* out) {
  if (n_rows == 0) return;
  add_rms_norm_kernel<<<static_cast<unsigned>(n_rows), row_threads(n), 0, stream>>>(x, y, w, static_cast<int>(n),
                                                                                    eps, out);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_l2_norm(cudaStream_t stream, const float* x, int64_t x_stride, int64_t n_rows, int64_t n, float eps,
                    float scale, float* out, int64_t out_stride) {
  if (n_rows == 0) return;
  l2_norm_kernel<<<static_cast<unsigned>(n_rows), row_threads(n), 0, stream>>>(x, x_stride, static_cast<int>(n), eps,
                                                                               scale, out, out_stride);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_rope_neox(cudaStream_t stream, float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                      int64_t n_rot, const int32_t* positions, float theta_scale) {
  if (n_tokens == 0 || n_rot == 0) return;
  rope_neox_kernel<<<static_cast<unsigned>(n_tokens), 256, 0, stream>>>(
      x, static_cast<int>(n_heads), static_cast<int>(head_dim), static_cast<int>(n_rot), positions, theta_scale);
  TANDEM_CUDA_CHECK_LAUNCH();
}

}  // namespace detail
}  // namespace tandem::cuda
