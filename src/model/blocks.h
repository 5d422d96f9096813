// Layer pieces shared by several architectures: (gated) grouped-query attention over
// per-sequence KV caches, the SwiGLU FFN, and the mixture-of-experts FFN with an optional
// shared expert. Architecture files wire these together; the math of each piece is here.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "core/tensor.h"
#include "model/model.h"

namespace tandem::model {

struct AttentionShape {
  int64_t n_head = 0, n_head_kv = 0, head_dim = 0, n_rot = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-6f;
};

struct AttentionWeights {
  Tensor wq, wk, wv, wo;                 // wq is {D, 2*H*d} when gated ([q_h | gate_h] per head)
  std::vector<float> bq, bk, bv;         // optional biases (qwen2)
  std::vector<float> q_norm, k_norm;     // optional per-head RMSNorm weights [d]
  bool gated = false;                    // Qwen3.5: o_h *= sigmoid(gate_h) before wo
};

// One sequence's slice of a batch, as attention needs it.
struct AttentionSequence {
  cpu::KvView k, v;  // this layer's cache rows [n_ctx][H_kv*d]
  int64_t n_past;    // positions already cached
  int64_t n_tokens;  // tokens of this sequence in the batch (consecutive)
};

// A sequence's KV cache for its attention layers: rows [slot][position][H_kv * d] in the
// chosen cache types.
class KvSequence : public SequenceState {
 public:
  std::vector<uint8_t> k_cache, v_cache;
  KvCacheTypes types;
  size_t k_row_bytes = 0, v_row_bytes = 0;
  // Fails (naming the type) when head_dim is not a multiple of a type's block.
  void allocate_kv(int64_t n_attention_layers, int64_t context, int64_t n_head_kv, int64_t head_dim,
                   KvCacheTypes kv);
};

// The sequences of a batch as attention layer `slot` sees them (all must be KvSequences).
void attention_sequences(std::span<const SequenceInput> batch, int64_t slot, std::vector<AttentionSequence>& out);

struct AttentionScratch {
  std::vector<float> qg, q, k, v, attn;
  std::vector<int32_t> positions;
  void reserve(int64_t max_tokens, const AttentionShape& shape, bool gated);
};

// out [T][D] = attention over the sequences' caches for input a [T][D] (already normed).
// Appends each sequence's new k/v rows to its cache at n_past.
void attention_block(cpu::OpContext& ctx, const AttentionWeights& w, const AttentionShape& shape,
                     const float* a, std::span<const AttentionSequence> seqs, AttentionScratch& s,
                     float* out);

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

struct FfnScratch {
  std::vector<float> ffn_a, ffn_b, router_logits, chosen_weight, expert_in, expert_out, shared;
  std::vector<int32_t> chosen, expert_tokens;
  std::vector<float> expert_weights;
  // Fused MoE path: token slots ordered by expert, their quantized inputs, the experts'
  // intermediate rows and outputs, and the chosen experts (all sized once in reserve).
  std::vector<int32_t> expert_first, slot_token, active_experts;
  std::vector<float> slot_weight, slot_gate, slot_up, slot_out;
  std::vector<uint8_t> act_in, slot_act, slot_down_act;
  bool grouped = false;  // the experts' types have integer kernels
  void reserve(int64_t max_tokens, int64_t n_embd, const FfnWeights& w);
};

// out [T][D] = FFN(m) for m [T][D] (already normed): dense SwiGLU or routed MoE (+ shared).
void ffn_block(cpu::OpContext& ctx, const FfnWeights& w, const float* m, int64_t T, int64_t D,
               FfnScratch& s, float* out);

// Start and end of every batched forward pass:
// concatenates the batch's tokens into `tokens` and writes their embeddings to x [T][D];
void embed_batch(cpu::OpContext& ctx, const Tensor& token_embd, std::span<const SequenceInput> batch,
                 std::vector<int32_t>& tokens, float* x);
// final RMSNorm and head for the rows each sequence asked for (its last token, or all), then
// advances each sequence's n_past. `scratch` holds at least T * D floats.
void finish_batch(cpu::OpContext& ctx, std::span<const SequenceInput> batch, const float* x, int64_t D,
                  const std::vector<float>& output_norm, float rms_eps, const Tensor& output, float* scratch);

}  // namespace tandem::model
