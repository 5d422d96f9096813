// The CPU op set: the numeric building blocks every forward pass is written with.
// Activations are f32 and row-major ([tokens][features]); weights stay in their GGUF
// type. Quantized weights are multiplied in integers against activations quantized to
// 8 bits (backend/cpu/quant_dot.h); F32/F16/BF16 weights are decoded a row at a time
// into per-thread scratch and dotted in f32 (never a whole dequantized copy).
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/rope.h"
#include "backend/cpu/quant_dot.h"
#include "core/memory.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace tandem::cpu {

// Attention works on tiles: a job takes up to kAttentionTileTokens query tokens (times the
// query heads of one KV head) past the cached keys kAttentionTileKeys at a time.
constexpr int64_t kAttentionTileTokens = 8, kAttentionTileKeys = 32;

// One thread's attention tile buffers (see flash_attention.cpp).
struct AttentionScratch {
  float* keys_t;  // [head_dim][kAttentionTileKeys]: a K tile, transposed
  float* values;  // [kAttentionTileKeys][head_dim]: a V tile
  float* scores;  // [group][kAttentionTileKeys]: one token's scores, then probabilities
  float* max;     // [kAttentionTileTokens * group]: running max per query row
  float* sum;     // [kAttentionTileTokens * group]: running sum of exp per query row
  float* row;     // [head_dim]: one decoded cache row
};

// The thread pool plus scratch every op reuses: per-thread decoded weight rows (float
// path), attention tiles, and quantized activations (integer path).
class OpContext {
 public:
  OpContext(int n_threads, int64_t max_row);
  // On a pool another context already runs (a draft model beside its target): the two
  // models take turns, so one set of threads serves both and none spins against the other.
  OpContext(std::shared_ptr<ThreadPool> pool, int64_t max_row);
  ThreadPool& pool() { return *pool_; }
  const std::shared_ptr<ThreadPool>& shared_pool() const { return pool_; }
  float* row_scratch(int thread) { return scratch_[static_cast<size_t>(thread)].data(); }
  int64_t max_row() const { return max_row_; }
  // Attention limits: the longest context a session will use and the most query heads per
  // KV head (sizes the tile buffers; head sizes up to max_row). Grows only; call before
  // the first forward pass.
  void reserve_context(int64_t n_ctx, int64_t group = 1);
  AttentionScratch attention_scratch(int thread);
  int64_t max_context() const { return max_ctx_; }
  int64_t max_group() const { return max_group_; }
  // Quantized activations of the matmul in flight; grows to the largest batch seen
  // (a few calls at start-up), then is reused.
  uint8_t* activation_buffer(size_t bytes);
  // Attention's partial sums when it splits the keys (grows to the largest call, then reused).
  float* attention_partials(size_t floats) {
    if (partials_.size() < floats) partials_.resize(floats);
    return partials_.data();
  }
  // Row offsets for matmul_grouped (grows to the largest group seen).
  int64_t* group_offsets(size_t n) {
    if (offsets_.size() < n) offsets_.resize(n);
    return offsets_.data();
  }
  // The integer dot kernel for a weight type on this CPU's best path (cached); empty when
  // float activations are forced.
  const QuantDotKernel& kernel(DType weight) const {
    static const QuantDotKernel none;
    return float_activations_ ? none : kernels_[static_cast<size_t>(weight)];
  }
  // Float activations for quantized weights too (weight rows decoded to f32), and f32 ones
  // for BF16 weights on AVX512-BF16 CPUs: slow, but free of the activation rounding; tests
  // use it to compare with f32 references.
  void set_float_activations(bool on) { float_activations_ = on; }
  bool float_activations() const { return float_activations_; }

  // The weight as the CPU runs it. A quantized matrix whose rows come in groups of 8 and
  // whose type has an interleaved kernel is repacked (interleaved.h) the first time it
  // runs, into memory this context keeps (every session on the context shares it); the
  // file's pages of it are released, so memory stays the file's size. Everything else is
  // used in place. Off with TANDEM_CPU_LAYOUT=rows. Copies are found by the weight's
  // address: the model must outlive the context (as every caller's scopes have it).
  const Tensor& prepared(const Tensor& w);
  // Rows [row0, row0 + n_rows) of w in the file's row layout, into dst: w's own bytes, or,
  // once repacked, its interleaved copy unpacked (how a GPU streams the CPU's experts).
  // Rows of a repacked weight go in whole groups of 8 (row0 and n_rows multiples of 8).
  void read_rows(const Tensor& w, int64_t row0, int64_t n_rows, uint8_t* dst);
  // The same rows as stored (the interleaved copy's bytes once repacked, copied as they
  // are), returning the unpack that brings them to the file's layout, or null when they
  // already are. A GPU that undoes the interleaving itself streams these (a plain copy
  // here instead of an unpack). Same group rule as read_rows.
  UnpackFn read_stored_rows(const Tensor& w, int64_t row0, int64_t n_rows, uint8_t* dst);
  // What read_stored_rows returns for w.
  UnpackFn stored_rows_unpack(const Tensor& w) const;
  // Bytes repacked so far.
  size_t interleaved_bytes() const { return interleaved_bytes_; }
  // Host memory for repacked weights (huge pages where the kernel allows).
  static Memory allocate_weights(size_t bytes);

 private:
  std::shared_ptr<ThreadPool> pool_;
  int64_t max_row_;
  int64_t max_ctx_ = 0;
  int64_t max_group_ = 1;
  std::vector<std::vector<float>> scratch_;
  std::vector<std::vector<float>> attention_;
  std::vector<uint8_t> activations_;
  std::vector<float> partials_;
  std::vector<int64_t> offsets_;
  std::vector<QuantDotKernel> kernels_;  // indexed by DType id
  bool float_activations_ = false;
  struct Repacked {
    Tensor tensor;
    Memory bytes;
  };
  std::unordered_map<const uint8_t*, Repacked> repacked_;  // by the file bytes' address
  // w's repacked copy for read_rows / read_stored_rows (null: none), after checking the
  // rows asked for.
  const Repacked* stored_copy(const Tensor& w, int64_t row0, int64_t n_rows, const char* op) const;
  // rows bytes from src to dst, by all threads.
  void parallel_copy(uint8_t* dst, const uint8_t* src, size_t bytes);
  size_t interleaved_bytes_ = 0;
  // The types whose 16-row pass this context has chosen widths for.
  std::bitset<64> width_types_;
  // k's in-cache and streamed x16 thresholds (group_width.h); the streamed one is the
  // in-cache one while `streaming` is false (the weights fit in the L3).
  void settle_widths(QuantDotKernel& k, bool streaming);
};

// Tokens a quantized matmul takes per pass over its row tiles: their activations
// (act_row bytes each) stay in the core's L2 while every row tile of the span goes past
// them. A whole 512-token prompt at n = 1536 is 0.9 MB of Q8_K activations; streamed from
// L3 once per 16-row tile, the Q4_K group dot lost 16% (tandem_kernel_bench --tokens 512).
// A multiple of 8 (the kernels' column block), at least 8.
int64_t matmul_token_chunk(size_t act_row);
// Rows of one weight the matmul takes as a tile (about 16 KiB, at most 16 rows): the tile
// stays in cache while the token chunk's columns go past it. Interleaved: whole groups,
// and two at least where the kernel has a 16-row pass (dot_x16), or wide rows (Q6_K at
// 1536, any 8960-wide ffn_down) would never reach it.
int64_t matmul_row_tile(const QuantDotKernel& kernel, size_t row_bytes, bool interleaved);

// y[t][o] = sum_i W[o][i] * x[t][i] (+ bias[o]) for t < n_tokens; W is {n_in, n_out}.
// x is [n_tokens][n_in], y is [n_tokens][n_out].
void matmul(OpContext& ctx, const Tensor& w, const float* x, int64_t n_tokens, float* y,
            const float* bias = nullptr);

// Quantized activations handed to several matmuls: one matmul of a group. Every weight of
// a group must use the same activation type (act_type_for(w.type)).
struct GroupedMatmul {
  Tensor w;             // 2-D quantized weight {n_in, n_out}
  const uint8_t* act;   // n_tokens quantized activation rows (activation_row_bytes each)
  int64_t n_tokens = 0;
  float* y = nullptr;   // [n_tokens][n_out]
  const float* bias = nullptr;  // [n_out], added to every token's row; optional
};
// The activation type a weight type's integer kernel wants on this context (F32 when the
// weight goes through the float path: no kernel, or float activations forced).
DType grouped_activation_type(const OpContext& ctx, DType weight);
// Quantizes n_rows rows of x ([n_rows][n]) for weights of type `weight` into dst.
void quantize_activations(OpContext& ctx, DType weight, const float* x, int64_t n_rows, int64_t n, uint8_t* dst);
// Runs the group in one parallel pass over all their rows, so that many small matmuls
// (a MoE layer's chosen experts) cost one hand-off instead of one each.
void matmul_grouped(OpContext& ctx, std::span<const GroupedMatmul> group);
// One matmul over pre-quantized activations on the calling thread only: for work that is
// already split across the pool by the caller (one MoE expert per job).
void matmul_serial(const QuantDotKernel& kernel, const GroupedMatmul& m);
// The kernel for the calls of one forward pass over `batch_tokens` tokens. A call of up to
// 8 tokens takes the streamed 16-row threshold (group_width.h), measured with every thread
// streaming: true of a pass that small, where every call streams. A larger pass runs its
// few-token calls (lightly routed experts) beside compute-bound ones, with the memory bus far
// from saturated, so they keep the in-cache threshold (qwen35moe-8l pp512 on Zen 5: 515-563
// tok/s with the streamed one, 577-591 without).
QuantDotKernel kernel_for_pass(const QuantDotKernel& kernel, int64_t batch_tokens);

// Several matmuls of one input (a layer's q/k/v, an FFN's gate/up): the input is quantized
// once per activation type and each type's weights run in one parallel pass; weights on
// the float path run one by one. Same results as a matmul() each.
struct SharedInputMatmul {
  const Tensor* w;
  float* y;                     // [n_tokens][n_out]
  const float* bias = nullptr;  // optional
};
void matmul_shared_input(OpContext& ctx, const float* x, int64_t n_tokens, std::span<const SharedInputMatmul> outs);

// Rows of an embedding table {D, V} for the given token ids -> out [n][D].
void embed(const Tensor& table, std::span<const int32_t> tokens, float* out);

// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, for n_rows rows of width n. In place allowed.
void rms_norm(const float* x, const float* w, int64_t n_rows, int64_t n, float eps, float* out);

// NeoX ("rotate half") RoPE on the first n_rot dims of each head, angles as backend/rope.h.
// x is [n_tokens][n_heads][head_dim].
void rope_neox(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t n_rot,
               std::span<const int32_t> positions, float freq_base);

using tandem::KvView;  // backend/backend.h: one layer's K or V cache rows of a sequence

// Causal grouped-query attention over a cache. q: [n_tokens][n_head][d]; token t sees cache
// positions 0..positions[t]. out: [n_tokens][n_head][d]. Flash-attention form
// (flash_attention.cpp): one job per (KV head, tile of tokens), each K/V tile decoded once
// for all its query rows, online softmax, no score row longer than a tile. Where that makes
// fewer jobs than threads (a decode step: one job per KV head) and the context is long,
// each job's keys are cut into attention_key_splits(...) runs of whole tiles, run as jobs
// of their own, and their partial sums merged (so a model with 2 KV heads does not leave
// all but two cores idle in attention).
constexpr int64_t kAttentionMinSplitKeys = 256;
// The number of key runs for `jobs` (token tile, KV head) jobs on `threads` over `keys`
// keys: 1 (no split) with a job per thread or more, or under 2 * kAttentionMinSplitKeys
// keys; else about two jobs per thread, runs of at least kAttentionMinSplitKeys keys.
int64_t attention_key_splits(int64_t jobs, int64_t threads, int64_t keys);
void attention(OpContext& ctx, const float* q, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
               int64_t head_dim, const KvView& k, const KvView& v, std::span<const int32_t> positions,
               float* out);

// out = silu(gate) * up, elementwise over n values.
void swiglu(const float* gate, const float* up, int64_t n, float* out);

// x += y over n values.
void add(float* x, const float* y, int64_t n);

// In-place softmax of n values (max-subtracted, f32).
void softmax(float* x, int64_t n);

// MoE routing of one token: softmax over the n_expert logits (in place), then k times the
// most probable expert not yet chosen (ties to the lower index) into chosen/weight [k];
// with `renormalize` (qwen3moe, qwen35moe, as llama.cpp) the k weights are divided by
// their sum, clamped to >= 6.1035e-5 so a flat router never divides by ~0.
void route_top_k(float* logits, int64_t n_expert, int64_t k, bool renormalize, int32_t* chosen, float* weight);

}  // namespace tandem::cpu
