// Causal grouped-query attention over a KV cache (ops.h attention), flash-attention form,
// f32 arithmetic on the FMA cores (no tensor cores yet: see "Not yet" below).
//
// One kernel serves decode and prompts. Its unit of work is a "row": one (token, query
// head) pair of one KV head; a KV head's rows are its tokens times its group of query
// heads, ordered token-major. A block takes R consecutive rows of one KV head (blockIdx.x:
// which R rows, blockIdx.y: the KV head) and one range of keys (blockIdx.z: the split):
//   - decode (1..few tokens): all query heads of the group of a token sit in one block,
//     so each K/V element is read once per token; the context is split over blockIdx.z
//     so that enough blocks run (plan_attention), and a second kernel merges the splits'
//     (max, sum, unnormalised output);
//   - prompts: R rows = R/group tokens per block, one split; causality limits each block
//     to the keys its last token sees.
// Per key tile (KT = 32 keys): the K tile is decoded from the cache type to f32 in shared
// memory (rows padded by 4 floats so the float4 reads of 8 lanes hit 32 distinct banks);
// each thread computes scores of one key for R/4 rows (q from shared memory, broadcast);
// online softmax per row by one warp (running max m and sum l; the output rescaled by
// e^(m_old - m_new)); then each warp accumulates its rows' outputs, lanes across the head
// dims, reading V straight from the cache (coalesced along the row).
//
// Numerics follow cpu::attention (backend/cpu/flash_attention.cpp): scores are the f32
// dot product summed in dim order times 1/sqrt(d), cache values decode to exactly the
// CPU's floats (d * q for Q8_0/Q4_0, exact f16), exp is expf. Differences come from the
// summation order of the softmax sums and of the value accumulation (tile by tile vs the
// CPU's 32-key tiles, and the split merge): a few f32 ulps over thousands of keys.
//
// Prompts over f16/quantized caches run on the tensor cores instead (attention_mma.cu,
// chosen by choose_attention_kernel below): that kernel rounds q and the probabilities to
// f16, which an f32 cache must not suffer, and this one is the reference it is tested
// against. Decode (a few rows per KV head) stays here: it reads each K/V byte once either way.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/reduce.cuh"

namespace tandem::cuda {
namespace {

using namespace attn;

constexpr int kThreads = 128, kWarps = kThreads / 32;
constexpr int kKeyTile = 32;                 // keys per tile (one per lane in the softmax)
constexpr int kTargetBlocks = 256;           // split the context until about this many blocks run
constexpr int kMinSplitKeys = 2 * kKeyTile;  // a split below this costs more than it gains
constexpr int kMaxSplits = 64;

// Rows per block by head size: as many as fit the 48 KiB of static shared memory with
// the q rows and a padded K tile (d = 256: 8 rows, exactly one token's group for Qwen3.5).
constexpr int rows_per_block(int64_t head_dim) { return head_dim <= 128 ? 32 : 8; }

template <int D, int R>
__global__ void __launch_bounds__(kThreads) attention_kernel(const Args a) {
  constexpr int KT = kKeyTile, kQuads = D / 4, kKStride = D + 4, kSStride = KT + 1;
  constexpr int kRowStep = kThreads / KT;     // score rows of a thread: tid / KT + kRowStep * s
  constexpr int kScoreRows = R / kRowStep;
  constexpr int kAccRows = R / kWarps;        // output rows of a warp: warp + kWarps * r
  constexpr int kAccCols = (D + 31) / 32;     // output dims of a lane: lane + 32 * c
  static_assert(R % kRowStep == 0 && R % kWarps == 0 && D % 4 == 0, "tile shape");

  __shared__ __align__(16) float sq[R * D];
  __shared__ __align__(16) float sk[KT * kKStride];
  __shared__ float ss[R * kSStride];  // scores, then probabilities
  __shared__ int s_limit[R];          // keys [0, limit) are visible to the row
  __shared__ float s_m[R], s_l[R], s_alpha[R];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = blockIdx.y, split = blockIdx.z;
  const int row0 = blockIdx.x * R;
  const int n_rows = min(R, a.n_tokens * a.group - row0);

  for (int idx = tid; idx < R * kQuads; idx += kThreads) {
    const int r = idx / kQuads, c = idx % kQuads;
    reinterpret_cast<float4*>(sq)[idx] = query_quad<D>(a, g, row0 + r, r < n_rows, c);
  }
  if (tid < R) {
    s_limit[tid] = visible_keys(a, row0 + tid, tid < n_rows);
    s_m[tid] = -INFINITY;
    s_l[tid] = 0.0f;
  }
  __syncthreads();
  int max_limit = 0;
  for (int r = 0; r < R; ++r) max_limit = max(max_limit, s_limit[r]);
  const int key_begin = split * a.split_keys;
  const int key_end = min(key_begin + a.split_keys, max_limit);

  float acc[kAccRows][kAccCols];
#pragma unroll
  for (int r = 0; r < kAccRows; ++r) {
#pragma unroll
    for (int c = 0; c < kAccCols; ++c) acc[r][c] = 0.0f;
  }

  for (int k0 = key_begin; k0 < key_end; k0 += KT) {
    const int nk = min(KT, key_end - k0);
    for (int idx = tid; idx < KT * kQuads; idx += kThreads) {
      const int j = idx / kQuads, c = idx % kQuads;
      float4 val = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (j < nk) val = load4(head_ptr<D>(a.k, k0 + j, g), a.k.kind, 4 * c);
      *reinterpret_cast<float4*>(sk + j * kKStride + 4 * c) = val;
    }
    __syncthreads();

    {  // scores: key j of this tile for rows r0 + kRowStep * s (warp-uniform rows)
      const int j = tid % KT, r0 = tid / KT;
      float dot[kScoreRows];
#pragma unroll
      for (int s = 0; s < kScoreRows; ++s) dot[s] = 0.0f;
      const float* kr = sk + j * kKStride;
#pragma unroll 4
      for (int c = 0; c < D; c += 4) {
        const float4 kv = *reinterpret_cast<const float4*>(kr + c);
#pragma unroll
        for (int s = 0; s < kScoreRows; ++s) {
          if (r0 + kRowStep * s >= n_rows) continue;  // padding rows of a small batch
          const float4 qv = *reinterpret_cast<const float4*>(sq + (r0 + kRowStep * s) * D + c);
          dot[s] = fmaf(qv.x, kv.x, dot[s]);
          dot[s] = fmaf(qv.y, kv.y, dot[s]);
          dot[s] = fmaf(qv.z, kv.z, dot[s]);
          dot[s] = fmaf(qv.w, kv.w, dot[s]);
        }
      }
#pragma unroll
      for (int s = 0; s < kScoreRows; ++s) {
        const int r = r0 + kRowStep * s;
        const bool visible = j < nk && k0 + j < s_limit[r];
        ss[r * kSStride + j] = visible ? dot[s] * a.scale : -INFINITY;
      }
    }
    __syncthreads();

    // Online softmax and value accumulation: warp w owns rows w + kWarps * r, so from here
    // to the end of the tile a warp reads only what it wrote itself (__syncwarp suffices).
#pragma unroll
    for (int r = 0; r < kAccRows; ++r) {
      const int row = warp + kWarps * r;
      if (row >= n_rows) continue;  // warp-uniform
      float* sr = ss + row * kSStride;
      const float s = lane < KT ? sr[lane] : -INFINITY;
      const float m_old = s_m[row];
      const float m_new = fmaxf(m_old, warp_max(s));
      const float p = m_new == -INFINITY ? 0.0f : expf(s - m_new);  // no key seen yet: nothing to add
      if (lane < KT) sr[lane] = p;
      const float p_sum = warp_sum(p);
      const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
      if (lane == 0) {
        s_l[row] = s_l[row] * alpha + p_sum;
        s_m[row] = m_new;
        s_alpha[row] = alpha;
      }
    }
    __syncwarp();
#pragma unroll
    for (int r = 0; r < kAccRows; ++r) {
      if (warp + kWarps * r >= n_rows) continue;
      const float alpha = s_alpha[warp + kWarps * r];
#pragma unroll
      for (int c = 0; c < kAccCols; ++c) acc[r][c] *= alpha;
    }
    for (int j = 0; j < (warp < n_rows ? nk : 0); ++j) {  // a warp without rows skips V
      const uint8_t* vh = head_ptr<D>(a.v, k0 + j, g);
      float vv[kAccCols];
#pragma unroll
      for (int c = 0; c < kAccCols; ++c) {
        const int i = lane + 32 * c;
        vv[c] = i < D ? load1(vh, a.v.kind, i) : 0.0f;
      }
#pragma unroll
      for (int r = 0; r < kAccRows; ++r) {
        if (warp + kWarps * r >= n_rows) continue;
        const float p = ss[(warp + kWarps * r) * kSStride + j];
#pragma unroll
        for (int c = 0; c < kAccCols; ++c) acc[r][c] = fmaf(p, vv[c], acc[r][c]);
      }
    }
    __syncthreads();  // the next tile overwrites sk and ss
  }

#pragma unroll
  for (int r = 0; r < kAccRows; ++r) {
    const int row = warp + kWarps * r;
    if (row >= n_rows) continue;
    const int64_t out_row = query_row(a, g, row0 + row);
    if (a.n_splits == 1) {
      const float l = s_l[row];
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      float* o = a.out + out_row * D;
#pragma unroll
      for (int c = 0; c < kAccCols; ++c) {
        if (lane + 32 * c < D) o[lane + 32 * c] = acc[r][c] * inv;
      }
    } else {
      const int64_t part_row = static_cast<int64_t>(split) * a.n_tokens * a.n_head + out_row;
      float* o = a.part_o + part_row * D;
#pragma unroll
      for (int c = 0; c < kAccCols; ++c) {
        if (lane + 32 * c < D) o[lane + 32 * c] = acc[r][c];
      }
      if (lane == 0) {
        a.part_ml[2 * part_row] = s_m[row];
        a.part_ml[2 * part_row + 1] = s_l[row];
      }
    }
  }
}

// Merges the splits of one (token, head) row: out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M).
__global__ void attention_merge_kernel(const float* part_o, const float* part_ml, int n_splits, int64_t n_rows,
                                       int d, float* out) {
  __shared__ float weight[kMaxSplits];
  __shared__ float inv_sum;
  const int64_t row = blockIdx.x;
  float m = -INFINITY;
  for (int s = 0; s < n_splits; ++s) m = fmaxf(m, part_ml[2 * (s * n_rows + row)]);
  for (int s = threadIdx.x; s < n_splits; s += blockDim.x) {
    const float ms = part_ml[2 * (s * n_rows + row)];
    weight[s] = ms == -INFINITY ? 0.0f : expf(ms - m);  // a split that saw no key adds nothing
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float l = 0.0f;
    for (int s = 0; s < n_splits; ++s) l += part_ml[2 * (s * n_rows + row) + 1] * weight[s];
    inv_sum = l > 0.0f ? 1.0f / l : 0.0f;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < n_splits; ++s) o = fmaf(part_o[(s * n_rows + row) * d + i], weight[s], o);
    out[row * d + i] = o * inv_sum;
  }
}

template <int D>
void launch(const Args& a, dim3 grid, cudaStream_t stream) {
  attention_kernel<D, rows_per_block(D)><<<grid, kThreads, 0, stream>>>(a);
}

}  // namespace

namespace detail {

AttentionKernel choose_attention_kernel(int64_t n_tokens, int64_t n_head, int64_t n_head_kv, DType k_type,
                                        DType v_type) {
  // The tensor-core kernel's block is kMmaRows (token, head) rows and it never splits the
  // context: below kMmaMinBlocks blocks the FMA kernel, which splits, keeps the GPU busier
  // (and with fewer than kMmaRows rows per KV head the mma would compute mostly padding).
  // An f32 cache must not be rounded to f16.
  const bool rows_enough = n_tokens * (n_head / n_head_kv) >= kMmaRows && n_tokens * n_head >= kMmaRows * kMmaMinBlocks;
  if (!rows_enough || k_type == DType::F32 || v_type == DType::F32) return AttentionKernel::kFma;
  return device_has_mma() ? AttentionKernel::kTensorCores : AttentionKernel::kFma;
}

AttentionPlan plan_attention(int64_t n_tokens, int64_t n_head, int64_t n_head_kv, int64_t head_dim, int64_t n_kv,
                             AttentionKernel kernel) {
  AttentionPlan plan;
  const int64_t group = n_head / n_head_kv;
  plan.rows_per_block = kernel == AttentionKernel::kTensorCores ? kMmaRows : rows_per_block(head_dim);
  plan.n_row_blocks = static_cast<int>((n_tokens * group + plan.rows_per_block - 1) / plan.rows_per_block);
  const int64_t blocks = plan.n_row_blocks * n_head_kv;
  int64_t splits = 1;
  if (kernel == AttentionKernel::kFma && blocks < kTargetBlocks && n_kv > kMinSplitKeys) {
    splits = std::min<int64_t>({(kTargetBlocks + blocks - 1) / blocks, (n_kv + kMinSplitKeys - 1) / kMinSplitKeys,
                                kMaxSplits});
  }
  plan.splits_wanted = static_cast<int>(splits);
  const int64_t per_split = (n_kv + splits - 1) / splits;
  plan.split_keys = static_cast<int>((per_split + kKeyTile - 1) / kKeyTile * kKeyTile);
  plan.n_splits = static_cast<int>((n_kv + plan.split_keys - 1) / plan.split_keys);
  if (plan.n_splits > 1) {
    plan.scratch_bytes = static_cast<size_t>(plan.n_splits) * static_cast<size_t>(n_tokens * n_head) *
                         static_cast<size_t>(head_dim + 2) * sizeof(float);
  }
  return plan;
}

void launch_attention(cudaStream_t stream, const float* q, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                      int64_t head_dim, const KvCacheView& k, const KvCacheView& v, const int32_t* positions,
                      int64_t n_kv, float* out, void* scratch, AttentionKernel kernel) {
  if (n_tokens == 0) return;
  const AttentionPlan plan = plan_attention(n_tokens, n_head, n_head_kv, head_dim, n_kv, kernel);
  Args a{};
  a.q = q;
  a.out = out;
  const int64_t rows = n_tokens * n_head;
  if (plan.n_splits > 1) {
    a.part_o = static_cast<float*>(scratch);
    a.part_ml = a.part_o + static_cast<int64_t>(plan.n_splits) * rows * head_dim;
  }
  a.k = {static_cast<const uint8_t*>(k.data), k.row_bytes, cache_kind(k.type)};
  a.v = {static_cast<const uint8_t*>(v.data), v.row_bytes, cache_kind(v.type)};
  a.positions = positions;
  a.n_tokens = static_cast<int>(n_tokens);
  a.n_head = static_cast<int>(n_head);
  a.group = static_cast<int>(n_head / n_head_kv);
  a.n_kv = static_cast<int>(n_kv);
  a.split_keys = plan.split_keys;
  a.n_splits = plan.n_splits;
  a.scale = 1.0f / sqrtf(static_cast<float>(head_dim));
  const dim3 grid(static_cast<unsigned>(plan.n_row_blocks), static_cast<unsigned>(n_head_kv),
                  static_cast<unsigned>(plan.n_splits));
  if (kernel == AttentionKernel::kTensorCores) {
    launch_attention_mma(a, grid, static_cast<int>(head_dim), stream);
  } else {
    switch (head_dim) {
      case 64: launch<64>(a, grid, stream); break;
      case 80: launch<80>(a, grid, stream); break;
      case 96: launch<96>(a, grid, stream); break;
      case 128: launch<128>(a, grid, stream); break;
      default: launch<256>(a, grid, stream); break;  // the caller allows nothing else
    }
  }
  TANDEM_CUDA_CHECK_LAUNCH();
  if (plan.n_splits > 1) {
    attention_merge_kernel<<<static_cast<unsigned>(rows), 128, 0, stream>>>(a.part_o, a.part_ml, plan.n_splits, rows,
                                                                           static_cast<int>(head_dim), out);
    TANDEM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace detail

size_t attention_scratch_bytes(int64_t max_tokens, int64_t n_head, int64_t n_head_kv, int64_t head_dim,
                               int64_t max_kv) {
  // Splits shrink as tokens grow, so the largest need can sit at any batch size: take the
  // maximum (a host loop over at most a few thousand sizes, once at set-up). Per size, the
  // split count wanted for max_kv bounds the one any shorter context gets; the cache types
  // are not known here, so both kernels' plans count.
  size_t bytes = 0;
  if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv != 0 || max_kv <= 0) return 0;
  for (int64_t t = 1; t <= max_tokens; ++t) {
    for (const auto kernel : {detail::AttentionKernel::kFma, detail::AttentionKernel::kTensorCores}) {
      const int splits = detail::plan_attention(t, n_head, n_head_kv, head_dim, max_kv, kernel).splits_wanted;
      if (splits > 1) {
        bytes = std::max(bytes, static_cast<size_t>(splits) * static_cast<size_t>(t * n_head) *
                                    static_cast<size_t>(head_dim + 2) * sizeof(float));
      }
    }
  }
  return bytes;
}

}  // namespace tandem::cuda
