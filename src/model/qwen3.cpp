// Qwen2, Qwen3 and Qwen3-MoE: the classic pre-norm decoder. They share one forward pass
// and differ only in optional pieces, so one file holds all three:
//   qwen2    — q/k/v projections carry biases;
//   qwen3    — per-head RMSNorm on q and k before RoPE (no biases);
//   qwen3moe — as qwen3, with a routed mixture of experts instead of the dense FFN.
//
// Per layer (T tokens, residual x [T][D]):
//   a = rms(x; attn_norm)
//   x += attention(a)        q/k/v (+bias), (qwen3*) q/k head norms, NeoX RoPE, causal GQA
//   m = rms(x; ffn_norm)
//   x += SwiGLU(m) | MoE(m)
// then h = rms(x; output_norm), logits = W_out h (W_out = token_embd when tied).
#include <algorithm>

#include "core/error.h"
#include "model/blocks.h"
#include "model/model.h"
#include "model/model_registry.h"
#include "model/weight_loader.h"

namespace tandem::model {
namespace {

struct Layer {
  std::vector<float> attn_norm, ffn_norm;  // [D]
  AttentionWeights attn;
  FfnWeights ffn;
};

class Qwen3Model final : public Model {
 public:
  explicit Qwen3Model(const gguf::ModelFiles& files);
  int64_t max_row() const override { return max_row_; }
  std::unique_ptr<SequenceState> new_sequence(const Backends& be, int64_t n_ctx, KvCacheTypes kv) const override;
  std::unique_ptr<Workspace> new_workspace(const Backends& be, int64_t max_tokens) const override;
  void forward(const Backends& be, Workspace& workspace, std::span<const SequenceInput> batch) const override;

 private:
  AttentionShape shape_;
  Tensor token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
  int64_t max_row_ = 0;
};

Qwen3Model::Qwen3Model(const gguf::ModelFiles& files) {
  hp_ = HParams::from_gguf(files);
  const HParams& h = hp_;
  const std::string& file = files.primary().name();
  const bool moe = h.arch == "qwen3moe";
  if (moe && (h.n_expert <= 0 || h.n_expert_used <= 0 || h.n_ff_expert <= 0)) {
    fail("{}: qwen3moe needs expert_count, expert_used_count and expert_feed_forward_length", file);
  }
  if (!moe && h.n_ff <= 0) fail("{}: feed_forward_length is missing or zero", file);
  if (h.n_rot != h.head_dim) {
    fail("{}: {} rotates whole heads, but rope.dimension_count {} != head dim {}", file, h.arch, h.n_rot, h.head_dim);
  }
  shape_ = {h.n_head, h.n_head_kv, h.head_dim, h.n_rot, h.rope_freq_base, h.rms_eps};
  WeightLoader w(files);
  const int64_t D = h.n_embd, q_dim = h.n_head * h.head_dim, kv_dim = h.n_head_kv * h.head_dim;
  token_embd_ = w.require("token_embd.weight", {D, h.n_vocab});
  output_norm_ = w.require_f32("output_norm.weight", D);
  output_ = w.optional("output.weight", {D, h.n_vocab});
  if (!output_.valid()) output_ = token_embd_;  // tied embeddings

  layers_.resize(static_cast<size_t>(h.n_layer));
  for (int64_t i = 0; i < h.n_layer; ++i) {
    Layer& l = layers_[static_cast<size_t>(i)];
    const std::string p = "blk." + std::to_string(i) + ".";
    l.attn_norm = w.require_f32(p + "attn_norm.weight", D);
    l.ffn_norm = w.require_f32(p + "ffn_norm.weight", D);
    l.attn.wq = w.require(p + "attn_q.weight", {D, q_dim});
    l.attn.wk = w.require(p + "attn_k.weight", {D, kv_dim});
    l.attn.wv = w.require(p + "attn_v.weight", {D, kv_dim});
    l.attn.wo = w.require(p + "attn_output.weight", {q_dim, D});
    l.attn.bq = w.optional_f32(p + "attn_q.bias", q_dim);
    l.attn.bk = w.optional_f32(p + "attn_k.bias", kv_dim);
    l.attn.bv = w.optional_f32(p + "attn_v.bias", kv_dim);
    if (h.arch != "qwen2") {
      l.attn.q_norm = w.require_f32(p + "attn_q_norm.weight", h.head_dim);
      l.attn.k_norm = w.require_f32(p + "attn_k_norm.weight", h.head_dim);
    }
    if (moe) {
      l.ffn.router = w.require(p + "ffn_gate_inp.weight", {D, h.n_expert});
      l.ffn.gate_exps = w.require(p + "ffn_gate_exps.weight", {D, h.n_ff_expert, h.n_expert});
      l.ffn.up_exps = w.require(p + "ffn_up_exps.weight", {D, h.n_ff_expert, h.n_expert});
      l.ffn.down_exps = w.require(p + "ffn_down_exps.weight", {h.n_ff_expert, D, h.n_expert});
      l.ffn.n_expert_used = h.n_expert_used;
    } else {
      l.ffn.gate = w.require(p + "ffn_gate.weight", {D, h.n_ff});
      l.ffn.up = w.require(p + "ffn_up.weight", {D, h.n_ff});
      l.ffn.down = w.require(p + "ffn_down.weight", {h.n_ff, D});
    }
  }
  max_row_ = std::max({D, q_dim, moe ? h.n_ff_expert : h.n_ff});
  unused_ = w.unused();
  placement_.assign(layers_.size(), LayerPlacement{});
}

std::unique_ptr<SequenceState> Qwen3Model::new_sequence(const Backends& be, int64_t n_ctx, KvCacheTypes kv) const {
  if (n_ctx <= 0) fail("context size must be positive (got {})", n_ctx);
  auto s = std::make_unique<KvSequence>();
  std::vector<Device> devices;  // every layer has attention: slot = layer
  for (const LayerPlacement& at : placement_) devices.push_back(at.main);
  s->allocate_kv(be, devices, n_ctx, hp_.n_head_kv, hp_.head_dim, kv);
  return s;
}

std::unique_ptr<Workspace> Qwen3Model::new_workspace(const Backends& be, int64_t max_tokens) const {
  if (max_tokens <= 0) fail("workspace size must be positive (got {})", max_tokens);
  auto ws = std::make_unique<LayerWorkspace>();
  allocate_workspace(be, placement_, output_device_, max_tokens, hp_.n_embd, hp_.n_expert_used, expert_streaming_,
                     *ws);
  for (size_t i = 0; i < layers_.size(); ++i) {
    be.on(placement_[i].main).reserve_attention(max_tokens, shape_, false);
    be.on(placement_[i].main).reserve_ffn(max_tokens, hp_.n_embd, layers_[i].ffn);
    be.on(placement_[i].experts).reserve_ffn(max_tokens, hp_.n_embd, layers_[i].ffn);
  }
  return ws;
}

void Qwen3Model::forward(const Backends& be, Workspace& workspace, std::span<const SequenceInput> batch) const {
  auto& ws = static_cast<LayerWorkspace&>(workspace);
  const HParams& h = hp_;
  const int64_t T = validate_batch(workspace, batch), D = h.n_embd;
  if (T == 0) return;
  embed_batch(be, ws, token_embd_, batch);  // x [T][D]
  for (int64_t i = 0; i < h.n_layer; ++i) {
    const Layer& l = layers_[static_cast<size_t>(i)];
    const LayerPlacement at = placement_[static_cast<size_t>(i)];
    Backend& b = enter(be, ws, at.main, T, D);
    DeviceActivations& act = ws.on(at.main);
    float *x = act.x.as<float>(), *a = act.a.as<float>(), *proj = act.proj.as<float>();
    attention_sequences(batch, i, ws.seqs);
    b.rms_norm(x, l.attn_norm, T, D, h.rms_eps, a);  // a [T][D]
    b.attention(l.attn, shape_, a, ws.seqs, proj);
    b.add(x, proj, T * D);
    b.rms_norm(x, l.ffn_norm, T, D, h.rms_eps, a);   // m [T][D]
    ffn_block(be, ws, l.ffn, at, T, D);              // proj = FFN(m)
    b.add(x, proj, T * D);
  }
  finish_batch(be, ws, batch, D, output_norm_, h.rms_eps, output_, output_device_);
}

}  // namespace

std::unique_ptr<Model> make_qwen3_family(const gguf::ModelFiles& files) {
  return std::make_unique<Qwen3Model>(files);
}

}  // namespace tandem::model
