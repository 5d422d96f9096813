// Causal grouped-query attention for prompts on the tensor cores (ops.h attention, chosen by
// detail::choose_attention_kernel for >= 64 rows per KV head over f16/Q8_0/Q4_0 caches).
//
// Same rows and grid as the FMA kernel (attention.cu), never split over the context (the
// plan gives it one split: it only runs with >= 32 blocks, and split partials of a prompt
// would cost tens of MB of scratch): a block takes 64 (token, query head) rows of one KV
// head and all the keys they see. Each of its 4 warps owns
// 16 rows and runs flash attention with mma.sync.m16n8k16 (f16 inputs, f32 accumulators):
//   - q is rounded to f16 once into shared memory; per key tile (KT keys) the K tile is
//     decoded to f16 row-major and the V tile to f16 transposed (V^T rows are then the
//     mma's column-major B operand, as K rows are for Q K^T);
//   - S = Q K^T stays in registers (KT/8 accumulator tiles of 16 x 8), scaled and masked
//     there; the online softmax's row max and sum reduce over the 4 lanes sharing a row;
//   - P (f32 probabilities rounded to f16) is fed back as the A operand straight from the
//     S registers: the accumulator layout of two adjacent 16 x 8 tiles is the A layout of
//     one 16 x 16 tile, so P never touches shared memory;
//   - O (16 x d per warp, f32) lives in registers, rescaled by e^(m_old - m_new) per row.
// Fragment layouts: mma.cuh.
// Shared-memory rows are padded by 8 halves (16 bytes), so the 8 rows x 4 words a fragment
// load touches fall in 32 distinct banks for every head size.
//
// Numerics against the FMA kernel / cpu::attention: q rounds to f16 (relative 2^-11) and so
// do Q8_0/Q4_0 cache values (d * q is not always an f16), the scores' error is that times
// their size; probabilities round to f16 before P V (sums stay f32). The op test's bound
// for this kernel says how far that goes. A q or cache value beyond f16's range (65504)
// would become infinite here where the FMA kernel stays finite; activations of real
// models are orders of magnitude below it.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/mma.cuh"

namespace tandem::cuda::attn {
namespace {

constexpr int kWarps = kMmaRows / 16, kThreads = kWarps * 32;

// Keys per tile: 64, or 32 at head size 256 so that a block's shared memory (q, K tile,
// V^T tile) stays within the 99 KiB an sm_86/sm_89 block may have.
constexpr int key_tile(int head_dim) { return head_dim > 128 ? 32 : 64; }
constexpr int q_stride(int head_dim) { return head_dim + 8; }  // halves per q / K row
constexpr size_t shared_bytes(int head_dim) {
  return sizeof(__half) * (static_cast<size_t>(kMmaRows + key_tile(head_dim)) * q_stride(head_dim) +
                           static_cast<size_t>(head_dim) * (key_tile(head_dim) + 8)) +
         sizeof(int) * kMmaRows;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xFFFFFFFFu, x, 1);
  return x + __shfl_xor_sync(0xFFFFFFFFu, x, 2);
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_mma_kernel(const Args a) {
  constexpr int KT = key_tile(D), kQS = q_stride(D), kVS = KT + 8;
  constexpr int kQuads = D / 4, kKSteps = D / 16, kScoreTiles = KT / 8, kOutTiles = D / 8;
  static_assert(D % 16 == 0 && KT % 16 == 0, "mma tile shape");

  extern __shared__ __align__(16) unsigned char smem[];
  __half* sq = reinterpret_cast<__half*>(smem);         // [kMmaRows][kQS]
  __half* sk = sq + kMmaRows * kQS;                      // [KT][kQS]
  __half* svt = sk + KT * kQS;                           // [D][kVS]: V tile transposed
  int* s_limit = reinterpret_cast<int*>(svt + D * kVS);  // keys [0, limit) are visible to the row

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int kv_head = blockIdx.y;
  const int row0 = blockIdx.x * kMmaRows;
  const int n_rows = min(kMmaRows, a.n_tokens * a.group - row0);

  for (int idx = tid; idx < kMmaRows * kQuads; idx += kThreads) {
    const int r = idx / kQuads, c = idx % kQuads;
    store4(sq + r * kQS + 4 * c, query_quad<D>(a, kv_head, row0 + r, r < n_rows, c));
  }
  if (tid < kMmaRows) s_limit[tid] = visible_keys(a, row0 + tid, tid < n_rows);
  __syncthreads();
  int key_end = 0;  // one split: every key any row sees
  for (int r = 0; r < kMmaRows; ++r) key_end = max(key_end, s_limit[r]);

  // This lane's two rows (g and g + 8 of the warp's 16) and the keys each may see.
  const int ra = warp * 16 + g, rb = ra + 8;
  const int limit_a = s_limit[ra], limit_b = s_limit[rb];
  const bool warp_has_rows = warp * 16 < n_rows;  // warp-uniform

  float o[kOutTiles][4];
#pragma unroll
  for (int n = 0; n < kOutTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;  // l: this lane's part of the row sum

  for (int k0 = 0; k0 < key_end; k0 += KT) {
    const int nk = min(KT, key_end - k0);
    for (int idx = tid; idx < KT * kQuads; idx += kThreads) {
      const int j = idx / kQuads, c = idx % kQuads;
      float4 kv = make_float4(0.0f, 0.0f, 0.0f, 0.0f), vv = kv;  // zeros past the keys: 0 * p, never NaN
      if (j < nk) {
        kv = load4(head_ptr<D>(a.k, k0 + j, kv_head), a.k.kind, 4 * c);
        vv = load4(head_ptr<D>(a.v, k0 + j, kv_head), a.v.kind, 4 * c);
      }
      store4(sk + j * kQS + 4 * c, kv);
      svt[(4 * c + 0) * kVS + j] = __float2half_rn(vv.x);
      svt[(4 * c + 1) * kVS + j] = __float2half_rn(vv.y);
      svt[(4 * c + 2) * kVS + j] = __float2half_rn(vv.z);
      svt[(4 * c + 3) * kVS + j] = __float2half_rn(vv.w);
    }
    __syncthreads();

    // A warp whose rows see none of this tile's keys (causality: its tokens come earlier)
    // skips it; the test is warp-uniform because every lane asks the same question.
    if (warp_has_rows && __any_sync(0xFFFFFFFFu, k0 < limit_a || k0 < limit_b)) {
      float s[kScoreTiles][4];
#pragma unroll
      for (int n = 0; n < kScoreTiles; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kKSteps; ++kk) {
        const __half* qa = sq + ra * kQS + kk * 16 + 2 * t;
        const __half* qb = sq + rb * kQS + kk * 16 + 2 * t;
        const uint32_t qf[4] = {word_at(qa), word_at(qb), word_at(qa + 8), word_at(qb + 8)};
#pragma unroll
        for (int n = 0; n < kScoreTiles; ++n) {
          const __half* kr = sk + (n * 8 + g) * kQS + kk * 16 + 2 * t;
          mma_16x8x16(s[n], qf, word_at(kr), word_at(kr + 8));
        }
      }

      // Scale, mask, and the online softmax of rows a (s[.][0..1]) and b (s[.][2..3]).
      float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
      for (int n = 0; n < kScoreTiles; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int key = k0 + n * 8 + 2 * t + e;
          s[n][e] = key < limit_a ? s[n][e] * a.scale : -INFINITY;
          s[n][2 + e] = key < limit_b ? s[n][2 + e] * a.scale : -INFINITY;
          mx_a = fmaxf(mx_a, s[n][e]);
          mx_b = fmaxf(mx_b, s[n][2 + e]);
        }
      }
      const float new_a = fmaxf(m_a, quad_max(mx_a)), new_b = fmaxf(m_b, quad_max(mx_b));
      const float alpha_a = m_a == -INFINITY ? 0.0f : expf(m_a - new_a);
      const float alpha_b = m_b == -INFINITY ? 0.0f : expf(m_b - new_b);
      m_a = new_a;
      m_b = new_b;
      float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
      for (int n = 0; n < kScoreTiles; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {  // a row with no visible key yet adds nothing
          s[n][e] = new_a == -INFINITY ? 0.0f : expf(s[n][e] - new_a);
          s[n][2 + e] = new_b == -INFINITY ? 0.0f : expf(s[n][2 + e] - new_b);
          sum_a += s[n][e];
          sum_b += s[n][2 + e];
        }
      }
      l_a = l_a * alpha_a + sum_a;
      l_b = l_b * alpha_b + sum_b;
#pragma unroll
      for (int n = 0; n < kOutTiles; ++n) {
        o[n][0] *= alpha_a;
        o[n][1] *= alpha_a;
        o[n][2] *= alpha_b;
        o[n][3] *= alpha_b;
      }

      // O += P V, 16 keys per step: score tiles 2j and 2j + 1 are the A operand.
#pragma unroll
      for (int j = 0; j < KT / 16; ++j) {
        const uint32_t pf[4] = {pack_half2(s[2 * j][0], s[2 * j][1]), pack_half2(s[2 * j][2], s[2 * j][3]),
                                pack_half2(s[2 * j + 1][0], s[2 * j + 1][1]),
                                pack_half2(s[2 * j + 1][2], s[2 * j + 1][3])};
#pragma unroll
        for (int n = 0; n < kOutTiles; ++n) {
          const __half* vr = svt + (n * 8 + g) * kVS + j * 16 + 2 * t;
          mma_16x8x16(o[n], pf, word_at(vr), word_at(vr + 8));
        }
      }
    }
    __syncthreads();  // the next tile overwrites sk and svt
  }

  l_a = quad_sum(l_a);
  l_b = quad_sum(l_b);
#pragma unroll
  for (int side = 0; side < 2; ++side) {  // rows a (accumulator values 0, 1) and b (2, 3)
    const int r = side == 0 ? ra : rb;
    if (r >= n_rows) continue;
    const int64_t out_row = query_row(a, kv_head, row0 + r);
    const float l = side == 0 ? l_a : l_b;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float* out = a.out + out_row * D + 2 * t;
#pragma unroll
    for (int n = 0; n < kOutTiles; ++n) {
      *reinterpret_cast<float2*>(out + n * 8) = make_float2(o[n][2 * side] * inv, o[n][2 * side + 1] * inv);
    }
  }
}

template <int D>
void launch(const Args& a, dim3 grid, cudaStream_t stream) {
  constexpr size_t bytes = shared_bytes(D);
  // Above 48 KiB a kernel must opt in to dynamic shared memory, per device: asked at every
  // launch (a host call, prompts only) so a context on another device is opted in too.
  TANDEM_CUDA_CHECK(cudaFuncSetAttribute(attention_mma_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes)));
  attention_mma_kernel<D><<<grid, kThreads, bytes, stream>>>(a);
}

}  // namespace

void launch_attention_mma(const Args& a, dim3 grid, int head_dim, cudaStream_t stream) {
  switch (head_dim) {
    case 64: launch<64>(a, grid, stream); break;
    case 80: launch<80>(a, grid, stream); break;
    case 96: launch<96>(a, grid, stream); break;
    case 128: launch<128>(a, grid, stream); break;
    default: launch<256>(a, grid, stream); break;  // ops_host.cpp allows nothing else
  }
}

}  // namespace tandem::cuda::attn
