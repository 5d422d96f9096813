// The CUDA op set for everything in a Qwen-family layer except the matmuls and DeltaNet:
// norms, RoPE, elementwise gates, MoE routing, greedy argmax, KV cache writes and
// attention. Each op has the layouts and the semantics of its CPU counterpart
// (backend/cpu/cpu_ops.h, model/blocks.cpp, runtime/sampler.cpp) and is tested against it
// (tests/backend/cuda/cuda_ops_test.cpp, error bound stated per op there).
//
// Every function only enqueues work on `stream`: no synchronisation and no allocation, so
// a decode step can be captured in a CUDA graph. Pointers are device pointers; activations
// are f32, row-major. Anything a kernel reads per step (positions) lives on the device, so
// a captured graph replays with new values. Bad arguments (unsupported head size or cache
// type, k > n_expert, misaligned pointers, scratch too small) fail with a tandem::Error
// naming the op and the value, before anything is launched.
//
// Kernels: norm_rope.cu (rms_norm, add_rms_norm, l2_norm, rope_neox), elementwise.cu,
// router.cu (moe_route, moe_weighted_sum, shared_expert_gate_add, argmax_rows),
// kv_cache.cu, attention.cu. Argument checks: ops_host.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace tandem::cuda {

// ---- norms and RoPE (norm_rope.cu) -------------------------------------------------------

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for n_rows rows of n values. Row r of x
// starts at x + r * x_stride, of out at out + r * out_stride: the per-head q/k norms use
// rows = tokens * heads and n = head_dim, and Qwen3.5's gated q (q_h and gate_h interleaved
// per head, [T][H][2d]) is normed straight out of the projection with x_stride = 2d into a
// compact [T][H][d] (out_stride = d). In place allowed (same pointer and stride).
void rms_norm(cudaStream_t stream, const float* x, int64_t x_stride, const float* w, int64_t n_rows, int64_t n,
              float eps, float* out, int64_t out_stride);
inline void rms_norm(cudaStream_t stream, const float* x, const float* w, int64_t n_rows, int64_t n, float eps,
                     float* out) {
  rms_norm(stream, x, n, w, n_rows, n, eps, out, n);
}

// x += y, then out = rms_norm(x) * w, per row of n: a block's residual add and the next
// norm in one pass over the row. out may alias y (not x).
void add_rms_norm(cudaStream_t stream, float* x, const float* y, const float* w, int64_t n_rows, int64_t n,
                  float eps, float* out);

// out[r] = x[r] * scale / max(|x[r]|, eps) per row of n (strides as rms_norm): the
// per-head L2 norm of DeltaNet's q and k (delta_net.h's delta_net_prep fuses the same
// math into its split; this is the stand-alone op).
void l2_norm(cudaStream_t stream, const float* x, int64_t x_stride, int64_t n_rows, int64_t n, float eps,
             float scale, float* out, int64_t out_stride);

// NeoX ("rotate half") RoPE in place on the first n_rot dims of every head: pairs
// (i, i + n_rot/2), angle positions[t] * freq_base^(-2i/n_rot) stepped out in f32 as the
// CPU does (backend/rope.h). x is [n_tokens][n_heads]
// [head_dim]; positions (device, int32) one per token. Qwen3.5's IMRoPE is this op for
// text input (every position component equals the token position; MODELS.md §3.3).
void rope_neox(cudaStream_t stream, float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t n_rot,
               const int32_t* positions, float freq_base);

// ---- elementwise (elementwise.cu) --------------------------------------------------------

// out = silu(gate) * up over n values. out may alias gate or up.
void swiglu(cudaStream_t stream, const float* gate, const float* up, int64_t n, float* out);
// x += y over n values.
void add(cudaStream_t stream, float* x, const float* y, int64_t n);
// x *= s over n values.
void scale(cudaStream_t stream, float* x, float s, int64_t n);
// o[r][i] *= sigmoid(g[r * g_stride + i]) for n_rows rows of n: Qwen3.5's attention output
// gate, read from the interleaved q projection (g = qg + d, g_stride = 2d).
void sigmoid_gate(cudaStream_t stream, float* o, int64_t n_rows, int64_t n, const float* g, int64_t g_stride);

// dst[i] = src[rows[i]] for n_rows rows of n values (rows on the device), zeros where
// rows[i] < 0: a prompt's tokens gathered per routed expert, with padding rows (see
// expert_groups.h). dst must not alias src.
void gather_rows(cudaStream_t stream, const float* src, const int32_t* rows, int64_t n_rows, int64_t n, float* dst);

// ---- mixture of experts and sampling (router.cu) -----------------------------------------

// Per token: softmax over the n_expert logits [T][E], the k most probable experts (ties to
// the lower index) and their probabilities, renormalised over the k when `renormalize`
// (qwen3moe, qwen35moe; the sum is clamped to >= 6.1035e-5 as the CPU does). ids, weights:
// [T][k], in order of choice. n_expert <= 512, k <= min(16, n_expert).
void moe_route(cudaStream_t stream, const float* logits, int64_t n_tokens, int64_t n_expert, int64_t k,
               bool renormalize, int32_t* ids, float* weights);

// out[t] = sum_j weights[t][j] * expert_out[row(t, j)] over rows of n, where row(t, j) =
// rows[t * k + j] when rows is given (outputs grouped by expert) and t * k + j otherwise.
// Overwrites out.
void moe_weighted_sum(cudaStream_t stream, const float* expert_out, const int32_t* rows, const float* weights,
                      int64_t n_tokens, int64_t k, int64_t n, float* out);

// out[t] += sigmoid(gate_w . m[t]) * shared[t] for rows of n: Qwen3.5-MoE's shared expert.
void shared_expert_gate_add(cudaStream_t stream, const float* m, const float* gate_w, const float* shared,
                            int64_t n_tokens, int64_t n, float* out);

// out[r] = index of the largest of the n values of row r (greedy sampling). Ties go to the
// lowest index and NaNs are never chosen, except that a NaN at index 0 gives 0: exactly
// std::max_element, as the CPU sampler.
void argmax_rows(cudaStream_t stream, const float* logits, int64_t n_rows, int64_t n, int32_t* out);

// ---- KV cache (kv_cache.cu) and attention (attention.cu) ---------------------------------

// One layer's K or V cache of one sequence on the device: n_rows rows (the context) of
// n_head_kv * head_dim values, row p at data + p * row_bytes, stored in `type`: F32, F16,
// Q8_0 or Q4_0 (model/blocks.h KvSequence, the same bytes as the CPU cache).
struct KvCacheView {
  void* data = nullptr;
  DType type = DType::F16;
  size_t row_bytes = 0;
  int64_t n_rows = 0;
};

// Writes n_rows f32 rows [n_rows][row_elems] to cache rows positions[i] (device, int32),
// converted as the CPU writes them (quant::quantize_row: f16 round-to-nearest-even, Q8_0
// and Q4_0 bit-identical to the reference quantizers). Rows whose position is outside the
// cache are skipped.
void kv_cache_write(cudaStream_t stream, const float* rows, int64_t n_rows, int64_t row_elems,
                    const int32_t* positions, const KvCacheView& cache);

// Scratch attention() needs for any call with n_tokens <= max_tokens and n_kv <= max_kv
// (the split-over-context partial results); 0 when no such call splits.
size_t attention_scratch_bytes(int64_t max_tokens, int64_t n_head, int64_t n_head_kv, int64_t head_dim,
                               int64_t max_kv);

// Causal grouped-query attention over one sequence's cache, as cpu::attention: q [T][H][d],
// token t sees cache positions 0..positions[t] (positions on the device), query head h
// reads KV head h / (H / H_kv), scale 1/sqrt(d), out [T][H][d]. n_kv bounds positions[t]
// + 1 (n_past + T, or the cache size when a graph replays with growing positions; keys at
// or past n_kv are never read). head_dim in {64, 80, 96, 128, 256}; K and V in F32, F16,
// Q8_0 or Q4_0, each independently. q and out 16-byte aligned, scratch as
// attention_scratch_bytes says.
void attention(cudaStream_t stream, const float* q, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
               int64_t head_dim, const KvCacheView& k, const KvCacheView& v, const int32_t* positions,
               int64_t n_kv, float* out, void* scratch, size_t scratch_bytes);

namespace detail {
// Unchecked launchers (defined in the .cu files); the functions above validate, then call
// these. Cache types are passed as their DType.
void launch_rms_norm(cudaStream_t stream, const float* x, int64_t x_stride, const float* w, int64_t n_rows,
                     int64_t n, float eps, float* out, int64_t out_stride);
void launch_add_rms_norm(cudaStream_t stream, float* x, const float* y, const float* w, int64_t n_rows, int64_t n,
                         float eps, float* out);
void launch_l2_norm(cudaStream_t stream, const float* x, int64_t x_stride, int64_t n_rows, int64_t n, float eps,
                    float scale, float* out, int64_t out_stride);
void launch_rope_neox(cudaStream_t stream, float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                      int64_t n_rot, const int32_t* positions, float theta_scale);
void launch_swiglu(cudaStream_t stream, const float* gate, const float* up, int64_t n, float* out);
void launch_add(cudaStream_t stream, float* x, const float* y, int64_t n);
void launch_gather_rows(cudaStream_t stream, const float* src, const int32_t* rows, int64_t n_rows, int64_t n,
                        float* dst);
void launch_scale(cudaStream_t stream, float* x, float s, int64_t n);
void launch_sigmoid_gate(cudaStream_t stream, float* o, int64_t n_rows, int64_t n, const float* g,
                         int64_t g_stride);
void launch_moe_route(cudaStream_t stream, const float* logits, int64_t n_tokens, int64_t n_expert, int64_t k,
                      bool renormalize, int32_t* ids, float* weights);
void launch_moe_weighted_sum(cudaStream_t stream, const float* expert_out, const int32_t* rows,
                             const float* weights, int64_t n_tokens, int64_t k, int64_t n, float* out);
void launch_shared_expert_gate_add(cudaStream_t stream, const float* m, const float* gate_w, const float* shared,
                                   int64_t n_tokens, int64_t n, float* out);
void launch_argmax_rows(cudaStream_t stream, const float* logits, int64_t n_rows, int64_t n, int32_t* out);
void launch_kv_cache_write(cudaStream_t stream, const float* rows, int64_t n_rows, int64_t row_elems,
                           const int32_t* positions, const KvCacheView& cache);
// How attention() splits a call over the context (one pass when n_splits == 1).
struct AttentionPlan {
  int rows_per_block = 0;  // (token, query head) rows of one KV head per block
  int n_row_blocks = 0;
  int n_splits = 1;
  int split_keys = 0;      // keys per split (a multiple of the key tile)
  int splits_wanted = 1;   // before rounding splits to whole tiles: never decreases as n_kv
                           // grows, so it bounds n_splits of every smaller n_kv
  size_t scratch_bytes = 0;  // for this call
};
// Which attention kernel runs: f32 on the FMA cores (every cache type, exact up to summation
// order), or f16 tensor cores (attention_mma.cu: q and the probabilities rounded to f16,
// never split over the context), which choose_attention_kernel picks for prompts (>= 64
// rows per KV head and >= 32 blocks of 64 rows) over f16/Q8_0/Q4_0 caches on compute
// capability 8.0+.
enum class AttentionKernel { kFma, kTensorCores };
AttentionKernel choose_attention_kernel(int64_t n_tokens, int64_t n_head, int64_t n_head_kv, DType k_type,
                                        DType v_type);
AttentionPlan plan_attention(int64_t n_tokens, int64_t n_head, int64_t n_head_kv, int64_t head_dim, int64_t n_kv,
                             AttentionKernel kernel = AttentionKernel::kFma);
void launch_attention(cudaStream_t stream, const float* q, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                      int64_t head_dim, const KvCacheView& k, const KvCacheView& v, const int32_t* positions,
                      int64_t n_kv, float* out, void* scratch, AttentionKernel kernel);
}  // namespace detail

}  // namespace tandem::cuda
