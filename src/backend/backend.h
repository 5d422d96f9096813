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

// One sequence's slice of a batch, as a DeltaNet block needs it: its carried state for
// this layer, in the memory of the backend that runs the layer.
struct DeltaNetSequence {
  float* conv_state;  // [(K-1)][C], oldest first
  float* ssm_state;   // [n_v][d_k][d_v]
  int64_t n_tokens;
};

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
  // A forward pass of `tokens` tokens starts (a GPU replays decode passes as graphs).
  virtual void begin_pass(int64_t /*tokens*/) {}
  // Starts the work queued so far now, without waiting for it (a GPU recording a graph
  // launches it), so that it runs while another device works.
  virtual void flush() {}

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
  // out [T][D] += sigmoid(shexp_gate . m[t]) * SwiGLU_shared(m[t]).
  virtual void shared_expert(const FfnWeights& w, const float* m, int64_t T, float* out) = 0;
  // logits [rows][V] (host memory) = head(rms(x; norm)) for rows of x; scratch holds rows * D floats.
  virtual void logits(const std::vector<float>& norm, float eps, const Tensor& head, const float* x, int64_t rows,
                      int64_t D, float* scratch, float* logits) = 0;
};

}  // namespace tandem
