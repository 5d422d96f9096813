// Gated DeltaNet kernels (see delta_net.h for the ops and layouts). The math and the order
// of operations follow backend/cpu/delta_net.cpp and model/qwen35.cpp; expf/log1pf/sqrtf
// are the accurate versions (no fast-math), so results match the CPU to f32 round-off.
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/delta_net.h"
#include "backend/cuda/reduce.cuh"

namespace tandem::cuda {
namespace {

constexpr int kChunk = static_cast<int>(kDeltaChunk);
// Per (chunk, value head) scratch: cumulative decay gamma [64], A [64][64] = (Q K^T) o D
// with the diagonal, L [64][64] = beta_t (K K^T) o D strictly below it.
constexpr int kChunkScratchFloats = kChunk + 2 * kChunk * kChunk;

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

__device__ __forceinline__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// ---------------------------------------------------------------------------------------
// 1. Causal depthwise conv + SiLU. One thread per (channel, tile of 16 tokens) slides a
// K-wide window held in registers; tiles over tokens give a prompt enough threads (C = 8192
// channels alone fill only ~32 blocks). Only the first tile reads the old state, so with a
// single tile the thread also writes the new state (its window after the last token);
// with several, a second kernel does it after every tile has read the old state.
constexpr int kConvThreads = 256;
constexpr int kConvTokenTile = 16;

template <int K>
__global__ void conv1d_silu_kernel(const float* __restrict__ P, int T, int C, const float* __restrict__ taps,
                                   const float* state_in, float* state, float* __restrict__ out, bool write_state) {
  constexpr int keep = K - 1;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int t0 = blockIdx.y * kConvTokenTile, t1 = min(T, t0 + kConvTokenTile);
  float w[K], window[K];
#pragma unroll
  for (int j = 0; j < K; ++j) w[j] = taps[static_cast<int64_t>(c) * K + j];
  // window[j] = input at relative time t - keep + j (negative times read the state).
#pragma unroll
  for (int j = 0; j < keep; ++j) {
    const int r = t0 - keep + j;
    window[j] = r < 0 ? state_in[static_cast<int64_t>(keep + r) * C + c] : P[static_cast<int64_t>(r) * C + c];
  }
  for (int t = t0; t < t1; ++t) {
    window[keep] = P[static_cast<int64_t>(t) * C + c];
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < K; ++j) sum += w[j] * window[j];
    out[static_cast<int64_t>(t) * C + c] = silu(sum);
#pragma unroll
    for (int j = 0; j < keep; ++j) window[j] = window[j + 1];
  }
  if (write_state) {
#pragma unroll
    for (int j = 0; j < keep; ++j) state[static_cast<int64_t>(j) * C + c] = window[j];
  }
}

// state_out = the last keep rows of [state_in ; P[0..T)]: the new state when the conv ran
// in several token tiles (then T > 16 > K-1, so every row comes from P), and a speculative
// rollback's conv state (any T). state_out must not overlap state_in.
__global__ void conv_state_after_kernel(const float* __restrict__ state_in, const float* __restrict__ P, int T,
                                        int C, int keep, float* __restrict__ state_out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int r = 0; r < keep; ++r) {
    const int at = T - keep + r;
    state_out[static_cast<int64_t>(r) * C + c] =
        at < 0 ? state_in[static_cast<int64_t>(keep + at) * C + c] : P[static_cast<int64_t>(at) * C + c];
  }
}

template <int K>
void launch_conv(cudaStream_t stream, const float* P, int T, int C, const float* taps, const float* state_in,
                 float* state, float* out) {
  const dim3 grid((C + kConvThreads - 1) / kConvThreads, (T + kConvTokenTile - 1) / kConvTokenTile);
  const bool single_tile = grid.y == 1;
  conv1d_silu_kernel<K><<<grid, kConvThreads, 0, stream>>>(P, T, C, taps, state_in, state, out, single_tile);
  TANDEM_CUDA_CHECK_LAUNCH();
  if (!single_tile) {  // reads P only (T > K-1), so state may alias state_in
    conv_state_after_kernel<<<grid.x, kConvThreads, 0, stream>>>(P, P, T, C, K - 1, state);
    TANDEM_CUDA_CHECK_LAUNCH();
  }
}

// ---------------------------------------------------------------------------------------
// 2. Prep: one block per token. A warp per q or k head row (sum of squares by shuffles),
// then the v copy and the gates. Written exactly as qwen35.cpp: x * (scale / max(|x|, eps)).
constexpr int kPrepThreads = 256;

__global__ void delta_net_prep_kernel(int n_k, int n_v, int d_k, int d_v, const float* __restrict__ conv,
                                      const float* b, const float* alpha, const float* __restrict__ a,
                                      const float* __restrict__ dt_bias, float eps, float q_scale,
                                      float* __restrict__ q, float* __restrict__ k, float* __restrict__ v,
                                      float* beta, float* g) {
  const int64_t t = blockIdx.x;
  const int64_t C_qk = static_cast<int64_t>(n_k) * d_k, C_v = static_cast<int64_t>(n_v) * d_v;
  const float* row = conv + t * (2 * C_qk + C_v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  for (int r = warp; r < 2 * n_k; r += n_warps) {
    const int part = r / n_k, head = r % n_k;  // part 0: q, 1: k
    const float* src = row + part * C_qk + static_cast<int64_t>(head) * d_k;
    float sum = 0.0f;
    for (int i = lane; i < d_k; i += 32) sum += src[i] * src[i];
    sum = warp_sum(sum);
    const float scale = (part == 0 ? q_scale : 1.0f) / fmaxf(sqrtf(sum), eps);
    float* dst = (part == 0 ? q : k) + t * C_qk + static_cast<int64_t>(head) * d_k;
    for (int i = lane; i < d_k; i += 32) dst[i] = src[i] * scale;
  }
  for (int64_t i = threadIdx.x; i < C_v; i += blockDim.x) v[t * C_v + i] = row[2 * C_qk + i];
  for (int j = threadIdx.x; j < n_v; j += blockDim.x) {
    const int64_t at = t * n_v + j;
    const float bj = b[at], alpha_j = alpha[at];  // read before writing: beta/g may alias b/alpha
    beta[at] = 1.0f / (1.0f + expf(-bj));
    g[at] = a[j] * softplus(alpha_j + dt_bias[j]);
  }
}

// ---------------------------------------------------------------------------------------
// 3. Recurrent delta rule (decode). Every column of S evolves on its own (u_c needs only
// column c), so work splits by columns: a warp owns 8 columns of one head, 4 lanes per
// column each holding DK/4 consecutive rows in registers; the two dot products over the
// key dim are 2-step shuffle sums. No shared memory and no block barriers; S is loaded
// once, kept in registers over the T tokens and stored once.
constexpr int kRecRowGroups = 4;
constexpr int kRecColsPerWarp = 32 / kRecRowGroups;
constexpr int kRecMaxWarps = 4;

template <int DK>
__global__ void __launch_bounds__(kRecMaxWarps * 32)
    delta_rule_recurrent_kernel(int T, int n_k, int n_v, int d_v, const float* __restrict__ q,
                                const float* __restrict__ k, const float* __restrict__ v,
                                const float* __restrict__ g, const float* __restrict__ beta,
                                const float* state_in, float* state, float* __restrict__ out,
                                float* state_after_first) {
  constexpr int R = DK / kRecRowGroups;  // rows per lane
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int col = (blockIdx.x * (blockDim.x / 32) + warp) * kRecColsPerWarp + lane % kRecColsPerWarp;
  if (col >= d_v) return;  // whole warps only (d_v is a multiple of 8), so shuffles stay full
  const int row0 = (lane / kRecColsPerWarp) * R;
  const int j = blockIdx.y, kh = j % n_k;
  // Each lane reads its rows of S (from state_in) before it writes them (to state), so the
  // two may be the same memory.
  const float* S_in = state_in + static_cast<int64_t>(j) * DK * d_v + col;
  float* S = state + static_cast<int64_t>(j) * DK * d_v + col;
  float s[R];
#pragma unroll
  for (int r = 0; r < R; ++r) s[r] = S_in[static_cast<int64_t>(row0 + r) * d_v];
  for (int t = 0; t < T; ++t) {
    const int64_t qk_at = (static_cast<int64_t>(t) * n_k + kh) * DK + row0;
    const int64_t gate_at = static_cast<int64_t>(t) * n_v + j;
    const int64_t v_at = gate_at * d_v + col;
    float kr[R], qr[R];
#pragma unroll
    for (int r = 0; r < R; r += 4) {
      const float4 k4 = *reinterpret_cast<const float4*>(k + qk_at + r);
      const float4 q4 = *reinterpret_cast<const float4*>(q + qk_at + r);
      kr[r] = k4.x, kr[r + 1] = k4.y, kr[r + 2] = k4.z, kr[r + 3] = k4.w;
      qr[r] = q4.x, qr[r + 1] = q4.y, qr[r + 2] = q4.z, qr[r + 3] = q4.w;
    }
    const float decay = expf(g[gate_at]), b = beta[gate_at];
    float pred = 0.0f;  // (S^T k)_col after the decay
#pragma unroll
    for (int r = 0; r < R; ++r) {
      s[r] *= decay;
      pred += s[r] * kr[r];
    }
    pred += __shfl_xor_sync(0xffffffffu, pred, 8);
    pred += __shfl_xor_sync(0xffffffffu, pred, 16);
    const float u = b * (v[v_at] - pred);
    float o = 0.0f;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      s[r] += kr[r] * u;
      o += s[r] * qr[r];
    }
    o += __shfl_xor_sync(0xffffffffu, o, 8);
    o += __shfl_xor_sync(0xffffffffu, o, 16);
    if (row0 == 0 && out != nullptr) out[v_at] = o;
    if (t == 0 && state_after_first != nullptr) {  // where a speculative rollback starts
      float* S1 = state_after_first + static_cast<int64_t>(j) * DK * d_v + col;
#pragma unroll
      for (int r = 0; r < R; ++r) S1[static_cast<int64_t>(row0 + r) * d_v] = s[r];
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) S[static_cast<int64_t>(row0 + r) * d_v] = s[r];
}

// ---------------------------------------------------------------------------------------
// 4a. Chunked delta rule, state-independent part: per (chunk, value head) the cumulative
// decay gamma and the decay-weighted Gram matrices A and L (see kChunkScratchFloats). All
// chunks at once. 256 threads as 16 x 16, each a 4 x 4 tile of both 64 x 64 products, the
// key dim staged through shared memory 32 columns at a time.
constexpr int kChunkThreads = 256;

template <int DK>
__global__ void __launch_bounds__(kChunkThreads)
    delta_chunk_gram_kernel(int T, int n_k, int n_v, const float* __restrict__ q, const float* __restrict__ k,
                            const float* __restrict__ g, const float* __restrict__ beta,
                            float* __restrict__ scratch) {
  constexpr int kTile = DK < 32 ? DK : 32;
  __shared__ float Ks[kChunk][kTile + 1], Qs[kChunk][kTile + 1];
  __shared__ float gam[kChunk];
  const int chunk = blockIdx.x, j = blockIdx.y, kh = j % n_k;
  const int t0 = chunk * kChunk, n = min(kChunk, T - t0);
  // Sequential, as the CPU: gamma_t = g_0 + ... + g_t in that order.
  if (threadIdx.x == 0) {
    float running = 0.0f;
    for (int t = 0; t < kChunk; ++t) {
      if (t < n) running += g[static_cast<int64_t>(t0 + t) * n_v + j];
      gam[t] = running;
    }
  }
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float kk[4][4] = {}, qk[4][4] = {};
  for (int d0 = 0; d0 < DK; d0 += kTile) {
    __syncthreads();
    for (int e = threadIdx.x; e < kChunk * kTile; e += kChunkThreads) {
      const int t = e / kTile, d = e % kTile;
      float kv = 0.0f, qv = 0.0f;  // rows past the end of the prompt are zero
      if (t < n) {
        const int64_t at = (static_cast<int64_t>(t0 + t) * n_k + kh) * DK + d0 + d;
        kv = k[at];
        qv = q[at];
      }
      Ks[t][d] = kv;
      Qs[t][d] = qv;
    }
    __syncthreads();
#pragma unroll 4
    for (int d = 0; d < kTile; ++d) {
      float kt[4], qt[4], ks[4];
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        kt[x] = Ks[ty + 16 * x][d];
        qt[x] = Qs[ty + 16 * x][d];
        ks[x] = Ks[tx + 16 * x][d];
      }
#pragma unroll
      for (int x = 0; x < 4; ++x) {
#pragma unroll
        for (int y = 0; y < 4; ++y) {
          kk[x][y] += kt[x] * ks[y];
          qk[x][y] += qt[x] * ks[y];
        }
      }
    }
  }
  float* out = scratch + (static_cast<int64_t>(chunk) * n_v + j) * kChunkScratchFloats;
  float* A = out + kChunk;
  float* L = A + kChunk * kChunk;
  if (threadIdx.x < kChunk) out[threadIdx.x] = gam[threadIdx.x];
#pragma unroll
  for (int x = 0; x < 4; ++x) {
    const int t = ty + 16 * x;
    const float bt = t < n ? beta[static_cast<int64_t>(t0 + t) * n_v + j] : 0.0f;
#pragma unroll
    for (int y = 0; y < 4; ++y) {
      const int s = tx + 16 * y;
      float av = 0.0f, lv = 0.0f;
      if (t < n && s <= t) {  // mask before exp: above the diagonal gamma_t - gamma_s > 0
        const float decay = expf(gam[t] - gam[s]);
        av = qk[x][y] * decay;
        if (s < t) lv = bt * kk[x][y] * decay;
      }
      A[t * kChunk + s] = av;
      L[t * kChunk + s] = lv;
    }
  }
}

// 4b. Chunked delta rule, the scan over chunks. One block per (value head, CT columns of
// S): that slice of S lives in shared memory for the whole call. Per chunk, with S0 the
// slice at its start:
//   1. w_t = S0^T k_t, qs_t = S0^T q_t                 (K, Q staged 32 key dims at a time)
//   2. U_t = beta_t (v_t - e^{gamma_t} w_t)            (right-hand side)
//   3. U_t -= sum_{s<t} L[t][s] U_s                    (forward substitution; PARTS lanes
//                                                       per column split the sum)
//   4. o_t = e^{gamma_t} qs_t + sum_{s<=t} A[t][s] U_s
//   5. S = e^{gamma_n} S0 + sum_s e^{gamma_n - gamma_s} k_s U_s^T
// M (64 x 64 floats) is reused: K|Q tiles, then L, then A, then K again.
template <int DK, int CT>
struct ChunkScanSmem {
  static constexpr int kUPitch = CT + CT / 8;  // step 3 reads a column at stride kUPitch: no bank conflicts
  float S[DK][CT];
  float U[kChunk][kUPitch];
  float M[kChunk * kChunk];
  float gam_exp[kChunk], beta[kChunk], tail_decay[kChunk];
};

template <int DK, int CT>
__global__ void __launch_bounds__(kChunkThreads)
    delta_chunk_scan_kernel(int T, int n_k, int n_v, int d_v, const float* __restrict__ q,
                            const float* __restrict__ k, const float* __restrict__ v,
                            const float* __restrict__ beta, const float* __restrict__ scratch,
                            const float* state_in, float* state, float* __restrict__ out) {
  constexpr int RG = kChunkThreads / CT;  // row groups (and, in step 3, lanes per column)
  constexpr int TPR = kChunk / RG;        // chunk rows per thread in steps 1, 2, 4
  constexpr int kQKTile = DK < 32 ? DK : 32;
  constexpr int kKTile = DK < 64 ? DK : 64;
  static_assert(RG <= 32 && 32 % RG == 0, "step 3 needs a column's lanes inside one warp");
  static_assert(kChunk % RG == 0 && DK % 4 == 0, "");
  __shared__ ChunkScanSmem<DK, CT> sm;

  const int j = blockIdx.y, kh = j % n_k, c0 = blockIdx.x * CT;
  const int tid = threadIdx.x, c = tid % CT, rg = tid / CT;
  const int64_t qk_stride = static_cast<int64_t>(n_k) * DK, v_stride = static_cast<int64_t>(n_v) * d_v;
  const float* kh_base = k + static_cast<int64_t>(kh) * DK;
  const float* qh_base = q + static_cast<int64_t>(kh) * DK;
  // The block's slice is read (from state_in) at the start and written (to state) at the
  // end, so the two may be the same memory.
  const float* S_in = state_in + static_cast<int64_t>(j) * DK * d_v + c0;
  float* S_global = state + static_cast<int64_t>(j) * DK * d_v + c0;
  for (int i = rg; i < DK; i += RG) sm.S[i][c] = S_in[static_cast<int64_t>(i) * d_v + c];

  for (int t0 = 0; t0 < T; t0 += kChunk) {
    const int n = min(kChunk, T - t0);
    const float* sc = scratch + (static_cast<int64_t>(t0 / kChunk) * n_v + j) * kChunkScratchFloats;
    const float* A = sc + kChunk;
    const float* L = A + kChunk * kChunk;
    __syncthreads();  // the previous chunk is done with every shared array
    if (tid < kChunk) {
      const float gamma_t = sc[tid], gamma_n = sc[n - 1];
      sm.gam_exp[tid] = expf(gamma_t);
      sm.beta[tid] = tid < n ? beta[static_cast<int64_t>(t0 + tid) * n_v + j] : 0.0f;
      sm.tail_decay[tid] = tid < n ? expf(gamma_n - gamma_t) : 0.0f;
    }

    // Step 1.
    float w[TPR], qs[TPR];
#pragma unroll
    for (int m = 0; m < TPR; ++m) w[m] = qs[m] = 0.0f;
    float* Kt = sm.M;                    // [64][32]
    float* Qt = sm.M + kChunk * 32;      // [64][32]
    for (int d0 = 0; d0 < DK; d0 += kQKTile) {
      __syncthreads();
      for (int e = tid; e < kChunk * kQKTile; e += kChunkThreads) {
        const int t = e / kQKTile, d = e % kQKTile;
        const int64_t at = static_cast<int64_t>(t0 + t) * qk_stride + d0 + d;
        Kt[t * 32 + d] = t < n ? kh_base[at] : 0.0f;
        Qt[t * 32 + d] = t < n ? qh_base[at] : 0.0f;
      }
      __syncthreads();
#pragma unroll 4
      for (int d = 0; d < kQKTile; ++d) {
        const float s0 = sm.S[d0 + d][c];
#pragma unroll
        for (int m = 0; m < TPR; ++m) {
          const int t = rg + RG * m;
          w[m] += Kt[t * 32 + d] * s0;
          qs[m] += Qt[t * 32 + d] * s0;
        }
      }
    }

    // Step 2.
#pragma unroll
    for (int m = 0; m < TPR; ++m) {
      const int t = rg + RG * m;
      float rhs = 0.0f;
      if (t < n) {
        const float vt = v[static_cast<int64_t>(t0 + t) * v_stride + static_cast<int64_t>(j) * d_v + c0 + c];
        rhs = sm.beta[t] * (vt - sm.gam_exp[t] * w[m]);
      }
      sm.U[t][c] = rhs;
    }
    __syncthreads();
    for (int e = tid; e < kChunk * kChunk; e += kChunkThreads) sm.M[e] = L[e];
    __syncthreads();

    // Step 3: column `col`'s RG lanes are consecutive lanes of one warp.
    {
      const int col = tid / RG, part = tid % RG;
      for (int t = 1; t < n; ++t) {
        float acc = 0.0f;
        for (int s = part; s < t; s += RG) acc += sm.M[t * kChunk + s] * sm.U[s][col];
#pragma unroll
        for (int offset = RG / 2; offset > 0; offset >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
        if (part == 0) sm.U[t][col] -= acc;
        __syncwarp();
      }
    }
    __syncthreads();
    for (int e = tid; e < kChunk * kChunk; e += kChunkThreads) sm.M[e] = A[e];
    __syncthreads();

    // Step 4.
#pragma unroll
    for (int m = 0; m < TPR; ++m) {
      const int t = rg + RG * m;
      if (t < n) {
        float o = sm.gam_exp[t] * qs[m];
        for (int s = 0; s <= t; ++s) o += sm.M[t * kChunk + s] * sm.U[s][c];
        out[static_cast<int64_t>(t0 + t) * v_stride + static_cast<int64_t>(j) * d_v + c0 + c] = o;
      }
    }

    // Step 5: K staged kKTile key dims at a time; each thread owns rows i of its column.
    const float gamma_n_exp = sm.gam_exp[n - 1];
    for (int d0 = 0; d0 < DK; d0 += kKTile) {
      __syncthreads();
      for (int e = tid; e < kChunk * kKTile; e += kChunkThreads) {
        const int s = e / kKTile, d = e % kKTile;
        sm.M[s * kKTile + d] = s < n ? kh_base[static_cast<int64_t>(t0 + s) * qk_stride + d0 + d] : 0.0f;
      }
      __syncthreads();
      for (int i = d0 + rg; i < d0 + kKTile; i += RG) {
        float sv = sm.S[i][c] * gamma_n_exp;
        for (int s = 0; s < n; ++s) sv += (sm.tail_decay[s] * sm.M[s * kKTile + i - d0]) * sm.U[s][c];
        sm.S[i][c] = sv;
      }
    }
  }
  __syncthreads();
  for (int i = rg; i < DK; i += RG) S_global[static_cast<int64_t>(i) * d_v + c] = sm.S[i][c];
}

// ---------------------------------------------------------------------------------------
// 5. Gated RMSNorm: a warp per row (a value head), as cpu::rms_norm then * silu(z).
constexpr int kNormThreads = 256;

__global__ void gated_rms_norm_kernel(const float* o, const float* __restrict__ z, const float* __restrict__ weight,
                                      int64_t rows, int n, float eps, float* y) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kNormThreads / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const float* x = o + row * n;
  float sum = 0.0f;
  for (int i = lane; i < n; i += 32) sum += x[i] * x[i];
  sum = warp_sum(sum);
  const float scale = 1.0f / sqrtf(sum / static_cast<float>(n) + eps);
  const float* zr = z + row * n;
  float* out = y + row * n;
  for (int i = lane; i < n; i += 32) out[i] = x[i] * scale * weight[i] * silu(zr[i]);
}

template <int DK>
void launch_recurrent(cudaStream_t stream, const DeltaNetShape& sh, int T, const float* q, const float* k,
                      const float* v, const float* g, const float* beta, const float* state_in, float* state,
                      float* out, float* state_after_first) {
  const int col_groups = static_cast<int>(sh.d_v / kRecColsPerWarp);
  const int warps = col_groups < kRecMaxWarps ? col_groups : kRecMaxWarps;
  const dim3 grid((col_groups + warps - 1) / warps, static_cast<unsigned>(sh.n_v));
  delta_rule_recurrent_kernel<DK><<<grid, warps * 32, 0, stream>>>(
      T, static_cast<int>(sh.n_k), static_cast<int>(sh.n_v), static_cast<int>(sh.d_v), q, k, v, g, beta, state_in,
      state, out, state_after_first);
  TANDEM_CUDA_CHECK_LAUNCH();
}

template <int DK, int CT>
void launch_chunked(cudaStream_t stream, const DeltaNetShape& sh, int T, const float* q, const float* k,
                    const float* v, const float* g, const float* beta, const float* state_in, float* state,
                    float* out, float* scratch) {
  const int n_chunks = (T + kChunk - 1) / kChunk;
  const int n_k = static_cast<int>(sh.n_k), n_v = static_cast<int>(sh.n_v), d_v = static_cast<int>(sh.d_v);
  delta_chunk_gram_kernel<DK><<<dim3(n_chunks, n_v), kChunkThreads, 0, stream>>>(T, n_k, n_v, q, k, g, beta,
                                                                                  scratch);
  TANDEM_CUDA_CHECK_LAUNCH();
  delta_chunk_scan_kernel<DK, CT><<<dim3(d_v / CT, n_v), kChunkThreads, 0, stream>>>(T, n_k, n_v, d_v, q, k, v,
                                                                                     beta, scratch, state_in,
                                                                                     state, out);
  TANDEM_CUDA_CHECK_LAUNCH();
}

template <int DK>
void launch_chunked_dk(cudaStream_t stream, const DeltaNetShape& sh, int T, const float* q, const float* k,
                       const float* v, const float* g, const float* beta, const float* state_in, float* state,
                       float* out, float* scratch) {
  if (sh.d_v % 32 == 0) return launch_chunked<DK, 32>(stream, sh, T, q, k, v, g, beta, state_in, state, out, scratch);
  if (sh.d_v == 16) return launch_chunked<DK, 16>(stream, sh, T, q, k, v, g, beta, state_in, state, out, scratch);
  return launch_chunked<DK, 8>(stream, sh, T, q, k, v, g, beta, state_in, state, out, scratch);
}

}  // namespace

namespace detail {

void launch_conv1d_silu(cudaStream_t stream, const float* P, int64_t T, int64_t C, const float* taps, int K,
                        const float* state_in, float* state, float* out) {
  const int t = static_cast<int>(T), c = static_cast<int>(C);
  switch (K) {
    case 2: return launch_conv<2>(stream, P, t, c, taps, state_in, state, out);
    case 3: return launch_conv<3>(stream, P, t, c, taps, state_in, state, out);
    case 4: return launch_conv<4>(stream, P, t, c, taps, state_in, state, out);
    case 5: return launch_conv<5>(stream, P, t, c, taps, state_in, state, out);
    case 6: return launch_conv<6>(stream, P, t, c, taps, state_in, state, out);
    case 7: return launch_conv<7>(stream, P, t, c, taps, state_in, state, out);
    default: return launch_conv<8>(stream, P, t, c, taps, state_in, state, out);
  }
}

void launch_conv_state_after(cudaStream_t stream, const float* state_in, const float* P, int64_t T, int64_t C,
                             int K, float* state_out) {
  const int c = static_cast<int>(C);
  conv_state_after_kernel<<<(c + kConvThreads - 1) / kConvThreads, kConvThreads, 0, stream>>>(
      state_in, P, static_cast<int>(T), c, K - 1, state_out);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_delta_net_prep(cudaStream_t stream, const DeltaNetShape& sh, int64_t T, const float* conv,
                           const float* b, const float* alpha, const float* a, const float* dt_bias, float eps,
                           float* q, float* k, float* v, float* beta, float* g) {
  const float q_scale = 1.0f / sqrtf(static_cast<float>(sh.d_k));  // as qwen35.cpp
  delta_net_prep_kernel<<<static_cast<unsigned>(T), kPrepThreads, 0, stream>>>(
      static_cast<int>(sh.n_k), static_cast<int>(sh.n_v), static_cast<int>(sh.d_k), static_cast<int>(sh.d_v), conv,
      b, alpha, a, dt_bias, eps, q_scale, q, k, v, beta, g);
  TANDEM_CUDA_CHECK_LAUNCH();
}

void launch_delta_rule_recurrent(cudaStream_t stream, const DeltaNetShape& sh, int64_t T, const float* q,
                                 const float* k, const float* v, const float* g, const float* beta,
                                 const float* state_in, float* state, float* out, float* state_after_first) {
  const int t = static_cast<int>(T);
  float* first = state_after_first;
  switch (sh.d_k) {
    case 16: return launch_recurrent<16>(stream, sh, t, q, k, v, g, beta, state_in, state, out, first);
    case 32: return launch_recurrent<32>(stream, sh, t, q, k, v, g, beta, state_in, state, out, first);
    case 64: return launch_recurrent<64>(stream, sh, t, q, k, v, g, beta, state_in, state, out, first);
    default: return launch_recurrent<128>(stream, sh, t, q, k, v, g, beta, state_in, state, out, first);
  }
}

void launch_delta_rule_chunked(cudaStream_t stream, const DeltaNetShape& sh, int64_t T, const float* q,
                               const float* k, const float* v, const float* g, const float* beta,
                               const float* state_in, float* state, float* out, float* scratch) {
  const int t = static_cast<int>(T);
  switch (sh.d_k) {
    case 16: return launch_chunked_dk<16>(stream, sh, t, q, k, v, g, beta, state_in, state, out, scratch);
    case 32: return launch_chunked_dk<32>(stream, sh, t, q, k, v, g, beta, state_in, state, out, scratch);
    case 64: return launch_chunked_dk<64>(stream, sh, t, q, k, v, g, beta, state_in, state, out, scratch);
    default: return launch_chunked_dk<128>(stream, sh, t, q, k, v, g, beta, state_in, state, out, scratch);
  }
}

void launch_gated_rms_norm(cudaStream_t stream, const float* o, const float* z, const float* weight, int64_t rows,
                           int64_t n, float eps, float* y) {
  constexpr int64_t rows_per_block = kNormThreads / 32;
  const auto blocks = static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block);
  gated_rms_norm_kernel<<<blocks, kNormThreads, 0, stream>>>(o, z, weight, rows, static_cast<int>(n), eps, y);
  TANDEM_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

size_t delta_rule_chunked_scratch_bytes(const DeltaNetShape& shape, int64_t max_tokens) {
  if (max_tokens <= 0 || shape.n_v <= 0) return 0;
  const int64_t n_chunks = (max_tokens + kChunk - 1) / kChunk;
  return static_cast<size_t>(n_chunks * shape.n_v) * kChunkScratchFloats * sizeof(float);
}

}  // namespace tandem::cuda
