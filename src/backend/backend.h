// The op set at the granularity the forward passes use it: one call per block of a layer
// (attention, Gated DeltaNet, dense FFN, MoE routing, routed experts, shared expert) plus
// the few glue ops between blocks. Each device implements it (backend/cpu today;
// backend/cuda binds its kernels to the same interface), fusing inside a block as it
// likes. An architecture's forward pass is written once over this interface and picks,
// per layer, the backend where that layer's weights live; activations cross devices only
// between blocks (model/blocks.h does the crossing).
//
// Activations are f32, row-major [tokens][features], in the memory of the backend that
// runs the block. Weights are Tensors (their bytes on the backend's device) and small f32
// vectors (norms, biases) that the backend reads from the host copy or its own mirror.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "backend/shapes.h"
#include "core/memory.h"
#include "core/tensor.h"

namespace tandem {

// ---- shapes and weights of the blocks (device-neutral views) ----

// Head subsets come in whole runs of this many rows: two interleaved groups of 8, the CPU
// matmul's row tile, so no run splits a group or pads a tile.
inline constexpr int64_t kHeadSubsetRows = 16;

// Rows [begin, end) of a matrix (an output head's vocabulary ids, for a subset of logits).
struct RowRange {
  int64_t begin = 0, end = 0;
  bool operator==(const RowRange&) const = default;
};

struct AttentionWeights {
  Tensor wq, wk, wv, wo;                 // wq is {D, 2*H*d} when gated ([q_h | gate_h] per head)
  std::vector<float> bq, bk, bv;         // optional biases (qwen2)
  std::vector<float> q_norm, k_norm;     // optional per-head RMSNorm weights [d]
  bool gated = false;                    // Qwen3.5: o_h *= sigmoid(gate_h) before wo
};

// One sequence's slice of a batch, as an attention block needs it.
struct AttentionSequence {
  KvView k, v;       // this layer's cache rows [n_ctx][H_kv*d]
  int64_t n_ctx;     // cache capacity in positions
  int64_t n_past;    // positions already cached
  int64_t n_tokens;  // tokens of this sequence in the batch (consecutive)
};

struct DeltaNetWeights {
  Tensor qkv, gate, beta, alpha, out;   // {D, C}, {D, C_v}, {D, n_v}, {D, n_v}, {C_v, D}
  std::vector<float> dt_bias, a;        // [n_v]; a = -exp(A_log) as stored
  std::vector<float> conv_taps;         // [C][K]
  std::vector<float> norm;              // [d_v]
  int64_t conv_kernel = 0;              // K
  float rms_eps = 1e-6f;
};

// A speculative verify pass's per-position inputs to the conv and the delta rule, kept so
// that the state can be rebuilt for any prefix of the pass (delta_net_rollback). In the
// memory of the backend that runs the layer, room for the pass's tokens.
struct DeltaNetRecord {
  float* P = nullptr;     // [T][C] raw conv inputs
  float* q = nullptr;     // [T][n_k*d_k] (normalised and scaled, as the delta rule reads it)
  float* k = nullptr;     // [T][n_k*d_k]
  float* v = nullptr;     // [T][n_v*d_v]
  float* g = nullptr;     // [T][n_v]
  float* beta = nullptr;  // [T][n_v]
};

// One sequence's slice of a batch, as a DeltaNet block needs it: its carried state for
// this layer, in the memory of the backend that runs the layer.
struct DeltaNetSequence {
  float* conv_state;  // [(K-1)][C], oldest first
  float* ssm_state;   // [n_v][d_k][d_v]
  int64_t n_tokens;
  // A verify pass reads the state from *_in and writes the advanced one to conv_state /
  // ssm_state (null *_in: in place), stores its inputs in *record, and writes the recurrent
  // state after its first token to ssm_first (which may be ssm_in: the state before the pass
  // is never needed again, as a verify pass always keeps its first token, sampled before it).
  const float* conv_in = nullptr;
  const float* ssm_in = nullptr;
  const DeltaNetRecord* record = nullptr;
  float* ssm_first = nullptr;
};

// Rebuilds the state after a verify pass's first `keep` >= 1 positions (*_out), what the
// pass would have left had it been fed only those tokens: the conv state from the one
// before the pass (conv_in) and the record's P, the recurrent state by re-running positions
// 1..keep-1 of the record from the state after the first position (ssm_in, the pass's
// ssm_first). conv_out must not alias conv_in; ssm_out may equal ssm_in only when keep is 1
// (nothing to re-run).
struct DeltaNetRollback {
  const float* conv_in;
  const float* ssm_in;
  float* conv_out;
  float* ssm_out;
  DeltaNetRecord record;
  int64_t keep;
};
// Fails, naming what is wrong, unless r keeps at least one position and its buffers alias
// only as DeltaNetRollback allows.
void check_delta_net_rollback(const DeltaNetRollback& r);

struct FfnWeights {
  // Dense SwiGLU (when router is absent).
  Tensor gate, up, down;                   // {D, F}, {D, F}, {F, D}
  // Mixture of experts.
  Tensor router;                           // {D, E}
  Tensor gate_exps, up_exps, down_exps;    // {D, F_e, E}, {D, F_e, E}, {F_e, D, E}
  int64_t n_expert_used = 0;
  // Optional shared expert (Qwen3.5-MoE): sigmoid(shexp_gate . m) * SwiGLU_s(m).
  Tensor gate_shexp, up_shexp, down_shexp;
  std::vector<float> shexp_gate;           // [D]
  bool is_moe() const { return router.valid(); }
};

// Expert streaming moves one weight matrix's experts at a time in slabs of whole experts;
// the receiving device holds two slabs, one being filled while the other is used. Slabs of
// up to kExpertSlabBytes are plenty (each is a few milliseconds on the link); a buffer down
// to two single experts still works, with more, smaller copies and launches.
inline constexpr uint64_t kExpertSlabBytes = uint64_t{32} << 20;
inline constexpr uint64_t kExpertSlabAlign = 256;  // each slab starts on this boundary
// One of the two slabs of a streaming buffer of buffer_bytes.
inline uint64_t expert_slab_bytes(uint64_t buffer_bytes) { return buffer_bytes / 2 / kExpertSlabAlign * kExpertSlabAlign; }
// Experts of expert_bytes each per slab of a buffer of buffer_bytes, at most n_expert; 0
// when not even one fits.
inline int64_t experts_per_slab(uint64_t buffer_bytes, uint64_t expert_bytes, int64_t n_expert) {
  const auto fit = static_cast<int64_t>(expert_bytes == 0 ? n_expert : expert_slab_bytes(buffer_bytes) / expert_bytes);
  return fit > n_expert ? n_expert : fit;
}
// The buffer that streams with one expert of expert_bytes per slab (the least that works).
inline uint64_t expert_stream_least_bytes(uint64_t expert_bytes) {
  return 2 * ((expert_bytes + kExpertSlabAlign - 1) / kExpertSlabAlign * kExpertSlabAlign);
}
// The buffer streaming a stack of n_expert experts of expert_bytes wants: two slabs of at
// most kExpertSlabBytes (at least one expert each).
inline uint64_t expert_stream_bytes(uint64_t expert_bytes, int64_t n_expert) {
  const int64_t per = experts_per_slab(2 * kExpertSlabBytes, expert_bytes, n_expert);
  return expert_stream_least_bytes(static_cast<uint64_t>(per < 1 ? 1 : per) * expert_bytes);
}

// How a backend stores a weight's rows, for a device that streams its raw bytes: rows
// interleaved in groups of 8, which this function turns back into file-layout rows (n
// elements of each of the group's 8 rows; backend/cpu/interleaved.h's Unpack). A null
// pointer means the file's own row layout.
using StoredRowsUnpack = void(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);

// ---- the interface ----

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // Zeroed memory on this device. Sized at set-up (workspaces, caches), never per token.
  virtual Memory allocate(size_t bytes) = 0;
  // Zeroed host memory that this device copies to and from fastest (page-locked for a GPU,
  // so copies are DMA without a staging hop); plain host memory for the CPU.
  virtual Memory allocate_host(size_t bytes) = 0;
  // Sets bytes of this device's memory to zero (ordered with the work issued here).
  virtual void zero(void* dst, size_t bytes) = 0;
  // Host <-> this device, ordered after the work already issued here; copy_to_host returns
  // when the bytes are on the host.
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  // copy_to_host without the wait: the bytes are on the host once a later copy_to_host or
  // finish on this device returns (several small results cross with one wait). Default:
  // copy_to_host.
  virtual void copy_to_host_queued(void* dst, const void* src, size_t bytes) { copy_to_host(dst, src, bytes); }
  // A forward pass of `tokens` tokens starts (a GPU replays decode passes as graphs).
  virtual void begin_pass(int64_t /*tokens*/) {}
  // Starts the work queued so far now, without waiting for it (a GPU recording a graph
  // launches it), so that it runs while another device works.
  virtual void flush() {}
  // Waits until the work queued so far is done (timing a block on its own: expert
  // streaming's measured rate must not include the layer's attention).
  virtual void finish() {}

  // Block scratch for batches of up to max_tokens (grows only; call before forward passes).
  virtual void reserve_attention(int64_t max_tokens, const AttentionShape& shape, bool gated) = 0;
  virtual void reserve_delta_net(int64_t max_tokens, const DeltaNetShape& shape, int64_t conv_kernel) = 0;
  virtual void reserve_ffn(int64_t max_tokens, int64_t n_embd, const FfnWeights& w) = 0;

  // x [n][D] = rows of the embedding table {D, V} for the token ids (host memory).
  virtual void embed(const Tensor& table, std::span<const int32_t> tokens, float* x) = 0;
  // out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for rows x n; in place allowed.
  virtual void rms_norm(const float* x, const std::vector<float>& w, int64_t rows, int64_t n, float eps,
                        float* out) = 0;
  // x += y over n values.
  virtual void add(float* x, const float* y, int64_t n) = 0;

  // out [T][D] = attention(a) over the sequences' caches (a is normed); appends each
  // sequence's new k/v rows to its cache at n_past.
  virtual void attention(const AttentionWeights& w, const AttentionShape& shape, const float* a,
                         std::span<const AttentionSequence> seqs, float* out) = 0;
  // out [T][D] = Gated DeltaNet(a) for the sequences (a is normed); advances their state.
  virtual void delta_net(const DeltaNetWeights& w, const DeltaNetShape& shape, const float* a,
                         std::span<const DeltaNetSequence> seqs, float* out) = 0;
  // Speculative rollback of one DeltaNet layer (DeltaNetRollback): the recurrence re-run
  // over recorded positions 1..keep-1 (outputs not computed), the conv state taken as the
  // last K-1 rows of [conv_in ; P[0..keep)]. On this device, queued like the blocks. Starts
  // with check_delta_net_rollback.
  virtual void delta_net_rollback(const DeltaNetShape& shape, int64_t conv_kernel, const DeltaNetRollback& r) = 0;
  // out [T][D] = W_down (silu(W_gate m) * W_up m).
  virtual void dense_ffn(const FfnWeights& w, const float* m, int64_t T, float* out) = 0;
  // The router: softmax over the experts, the n_expert_used most probable (ties to the
  // lower index), their probabilities renormalised into chosen/weight [T][k] (this
  // backend's memory; model/blocks.cpp copies them when the experts live elsewhere).
  virtual void moe_route(const FfnWeights& w, const float* m, int64_t T, int32_t* chosen, float* weight) = 0;
  // out [T][D] = sum_j weight[t][j] * Expert_{chosen[t][j]}(m[t]), chosen/weight in this
  // backend's memory. Reads only the chosen experts.
  virtual void moe_experts(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen,
                           const float* weight, float* out) = 0;
  // Expert streaming (hybrid prompts, model/expert_streaming.h): this device computes the
  // routed experts of a layer whose expert weights live in `holder`'s memory, moving the
  // weights here for the call (holder.read_weight_rows) instead of the activations there.
  // Same contract as moe_experts otherwise. Only backends that say so can.
  virtual bool can_stream_experts() const { return false; }
  // The device buffer streamed slabs go through (its size sets the slab size).
  virtual void reserve_expert_streaming(uint64_t /*bytes*/) {}
  virtual void moe_experts_streamed(const FfnWeights& w, Backend& holder, const float* m, int64_t T,
                                    const int32_t* chosen, const float* weight, float* out);
  // Rows [row0, row0 + n_rows) of weight w (on this device) in the file's row layout,
  // written to host memory dst: what another device streams. Default: w's bytes as they are
  // (host memory); the CPU backend undoes its interleaving.
  virtual void read_weight_rows(const Tensor& w, int64_t row0, int64_t n_rows, void* dst);
  // The same rows as this device stores them (a plain copy, no unpacking: what a receiving
  // device that can undo the layout itself streams), returning how they are laid out.
  // Default: read_weight_rows, the file's layout (null).
  virtual StoredRowsUnpack* read_stored_rows(const Tensor& w, int64_t row0, int64_t n_rows, void* dst);
  // What read_stored_rows returns for w, without reading.
  virtual StoredRowsUnpack* stored_rows_layout(const Tensor& /*w*/) { return nullptr; }
  // out [T][D] += sigmoid(shexp_gate . m[t]) * SwiGLU_shared(m[t]).
  virtual void shared_expert(const FfnWeights& w, const float* m, int64_t T, float* out) = 0;
  // out [rows][w's output width] = w x for rows of x (the MTP block's eh_proj). The CPU has
  // it; other backends fail, naming themselves.
  virtual void linear(const Tensor& w, const float* x, int64_t rows, float* out);
  // logits [rows][V] (host memory) = head(rms(x; norm)) for rows of x; scratch holds rows * D floats.
  virtual void logits(const std::vector<float>& norm, float eps, const Tensor& head, const float* x, int64_t rows,
                      int64_t D, float* scratch, float* logits) = 0;
  // The same logits over the head's rows in `subset` only (sorted, disjoint, within the
  // head; each a multiple of kHeadSubsetRows long, the last may end at the vocabulary's end):
  // those are equal to logits()'s to the last bit, every other one is -inf. For a draft model,
  // whose guesses only steer speculation. Default: the full head, then the rest set to -inf
  // (same values, no time saved: a GPU head is cheap); the CPU reads only the subset's rows.
  virtual void logits_subset(const std::vector<float>& norm, float eps, const Tensor& head, const float* x,
                             int64_t rows, int64_t D, float* scratch, float* logits, std::span<const RowRange> subset);
};

// Fails, naming the head, unless `subset` is as Backend::logits_subset takes it.
void check_head_subset(const Tensor& head, std::span<const RowRange> subset);
// logits[0..V) outside `subset` = -inf.
void fill_outside_subset(std::span<const RowRange> subset, int64_t V, float* logits);

}  // namespace tandem
