// Qwen3.5 (qwen35, dense FFN) and Qwen3.5-MoE (qwen35moe, routed experts + shared expert):
// a hybrid of Gated DeltaNet ("linear attention") layers and gated full-attention layers.
// Layer i is full attention when (i+1) % full_attention_interval == 0, DeltaNet otherwise.
//
// Per layer (residual x [T][D]; all norms are stored with the +1 already applied):
//   a = rms(x; attn_norm)
//   full attention: x += W_o (attention(q, k, v) * sigmoid(gate))   q/gate interleaved per
//                   head in attn_q, q/k head norms, NeoX RoPE on the first n_rot dims
//   DeltaNet:       P = W_qkv a -> causal conv (carried state) -> silu -> split q|k|v
//                   q, k L2-normalised per head (q / sqrt(d_k)); beta = sigmoid(W_b a);
//                   g = ssm_a * softplus(W_alpha a + dt); gated delta rule (state S);
//                   x += W_out (rms(o; ssm_norm) * silu(W_z a)) per value head
//   m = rms(x; post_attention_norm)
//   x += SwiGLU(m) | MoE(m) + sigmoid(w_s . m) SharedExpert(m)
// then h = rms(x; output_norm), logits = W_out h. The MTP block (blk.<n_layer>.nextn.*) is
// loaded for speculative decoding but not run by the trunk.
#include <algorithm>
#include <cmath>

#include "backend/cpu/delta_net.h"
#include "core/error.h"
#include "model/blocks.h"
#include "model/model.h"
#include "model/model_registry.h"
#include "model/weight_loader.h"

namespace tandem::model {
namespace {

struct DeltaNetWeights {
  Tensor qkv, gate, beta, alpha, out;   // {D, C}, {D, C_v}, {D, n_v}, {D, n_v}, {C_v, D}
  std::vector<float> dt_bias, a;        // [n_v]; a = -exp(A_log)
  std::vector<float> conv_taps;         // [C][K]
  std::vector<float> norm;              // [d_v]
};

struct Layer {
  bool full_attention = false;
  std::vector<float> attn_norm, post_attention_norm;  // [D]
  AttentionWeights attn;
  DeltaNetWeights delta;
  FfnWeights ffn;
};

// The MTP draft block, kept for speculative decoding (not run by the trunk).
struct MtpBlock {
  Tensor eh_proj;                     // {2D, D}
  std::vector<float> enorm, hnorm, shared_head_norm;
  Layer layer;
};

// KV cache for the full-attention layers plus the DeltaNet layers' recurrent state.
class Qwen35Sequence : public KvSequence {
 public:
  std::vector<float> conv_state, ssm_state;  // DeltaNet layers: [slot][(K-1)*C], [slot][n_v][d_k][d_v]
  void clear() override {
    n_past = 0;
    std::fill(conv_state.begin(), conv_state.end(), 0.0f);
    std::fill(ssm_state.begin(), ssm_state.end(), 0.0f);
  }
};

class Qwen35Workspace : public Workspace {
 public:
  std::vector<float> x, a, proj;                 // [T][D]
  std::vector<int32_t> tokens;
  std::vector<AttentionSequence> seqs;
  AttentionScratch attn;
  FfnScratch ffn;
  // DeltaNet: P/conv [T][C], z/o/y [T][C_v], q/k [T][n_k*d_k], v [T][C_v], gates [T][n_v].
  std::vector<float> P, conv, z, q, k, v, o, y, b, alpha, g, beta;
};

class Qwen35Model final : public Model {
 public:
  explicit Qwen35Model(const gguf::ModelFiles& files);
  int64_t max_row() const override { return max_row_; }
  std::unique_ptr<SequenceState> new_sequence(int64_t n_ctx, KvCacheTypes kv) const override;
  std::unique_ptr<Workspace> new_workspace(int64_t max_tokens) const override;
  void forward(cpu::OpContext& ctx, Workspace& workspace,
               std::span<const SequenceInput> batch) const override;

 private:
  void load_layer(WeightLoader& w, int64_t index, bool full_attention, Layer& l) const;
  void delta_net_block(cpu::OpContext& ctx, const DeltaNetWeights& w, int64_t slot,
                       std::span<const SequenceInput> batch, int64_t T, Qwen35Workspace& s) const;

  int64_t conv_channels() const { return 2 * hp_.ssm_n_k * hp_.ssm_d_k + hp_.ssm_n_v * hp_.ssm_d_v; }
  int64_t value_width() const { return hp_.ssm_n_v * hp_.ssm_d_v; }

  AttentionShape shape_;
  cpu::DeltaNetShape delta_shape_;
  Tensor token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
  std::vector<int64_t> slot_;  // layer -> index among layers of its kind
  int64_t n_attention_layers_ = 0, n_delta_layers_ = 0;
  bool has_mtp_ = false;
  MtpBlock mtp_;
  int64_t max_row_ = 0;
};

void Qwen35Model::load_layer(WeightLoader& w, int64_t index, bool full_attention, Layer& l) const {
  const HParams& h = hp_;
  const int64_t D = h.n_embd, q_dim = h.n_head * h.head_dim, kv_dim = h.n_head_kv * h.head_dim;
  const std::string p = "blk." + std::to_string(index) + ".";
  l.full_attention = full_attention;
  l.attn_norm = w.require_f32(p + "attn_norm.weight", D);
  l.post_attention_norm = w.require_f32(p + "post_attention_norm.weight", D);
  if (full_attention) {
    l.attn.gated = true;
    l.attn.wq = w.require(p + "attn_q.weight", {D, 2 * q_dim});
    l.attn.wk = w.require(p + "attn_k.weight", {D, kv_dim});
    l.attn.wv = w.require(p + "attn_v.weight", {D, kv_dim});
    l.attn.wo = w.require(p + "attn_output.weight", {q_dim, D});
    l.attn.q_norm = w.require_f32(p + "attn_q_norm.weight", h.head_dim);
    l.attn.k_norm = w.require_f32(p + "attn_k_norm.weight", h.head_dim);
  } else {
    const int64_t C = conv_channels(), Cv = value_width(), nv = h.ssm_n_v;
    l.delta.qkv = w.require(p + "attn_qkv.weight", {D, C});
    l.delta.gate = w.require(p + "attn_gate.weight", {D, Cv});
    l.delta.beta = w.require(p + "ssm_beta.weight", {D, nv});
    l.delta.alpha = w.require(p + "ssm_alpha.weight", {D, nv});
    l.delta.out = w.require(p + "ssm_out.weight", {Cv, D});
    l.delta.dt_bias = w.require_f32(p + "ssm_dt.bias", nv);
    l.delta.a = w.require_f32(p + "ssm_a", nv);
    l.delta.conv_taps = w.require_small_f32(p + "ssm_conv1d.weight", {h.ssm_conv_kernel, C});
    l.delta.norm = w.require_f32(p + "ssm_norm.weight", h.ssm_d_v);
  }
  if (h.arch == "qwen35moe") {
    l.ffn.router = w.require(p + "ffn_gate_inp.weight", {D, h.n_expert});
    l.ffn.gate_exps = w.require(p + "ffn_gate_exps.weight", {D, h.n_ff_expert, h.n_expert});
    l.ffn.up_exps = w.require(p + "ffn_up_exps.weight", {D, h.n_ff_expert, h.n_expert});
    l.ffn.down_exps = w.require(p + "ffn_down_exps.weight", {h.n_ff_expert, D, h.n_expert});
    l.ffn.n_expert_used = h.n_expert_used;
    l.ffn.gate_shexp = w.require(p + "ffn_gate_shexp.weight", {D, h.n_ff_shared});
    l.ffn.up_shexp = w.require(p + "ffn_up_shexp.weight", {D, h.n_ff_shared});
    l.ffn.down_shexp = w.require(p + "ffn_down_shexp.weight", {h.n_ff_shared, D});
    l.ffn.shexp_gate = w.require_vector_f32(p + "ffn_gate_inp_shexp.weight", D);
  } else {
    l.ffn.gate = w.require(p + "ffn_gate.weight", {D, h.n_ff});
    l.ffn.up = w.require(p + "ffn_up.weight", {D, h.n_ff});
    l.ffn.down = w.require(p + "ffn_down.weight", {h.n_ff, D});
  }
}

Qwen35Model::Qwen35Model(const gguf::ModelFiles& files) {
  hp_ = HParams::from_gguf(files);
  const HParams& h = hp_;
  const std::string& file = files.primary().name();
  if (h.arch == "qwen35moe" && (h.n_expert <= 0 || h.n_expert_used <= 0 || h.n_ff_expert <= 0 || h.n_ff_shared <= 0)) {
    fail("{}: qwen35moe needs expert_count, expert_used_count, expert_feed_forward_length and "
         "expert_shared_feed_forward_length", file);
  }
  if (h.arch == "qwen35" && h.n_ff <= 0) fail("{}: feed_forward_length is missing or zero", file);
  if (h.ssm_d_v != h.ssm_d_k) {
    fail("{}: DeltaNet value head dim {} must equal ssm.state_size {}", file, h.ssm_d_v, h.ssm_d_k);
  }
  shape_ = {h.n_head, h.n_head_kv, h.head_dim, h.n_rot, h.rope_freq_base, h.rms_eps};
  delta_shape_ = {h.ssm_n_k, h.ssm_n_v, h.ssm_d_k, h.ssm_d_v};
  WeightLoader w(files);
  const int64_t D = h.n_embd;
  token_embd_ = w.require("token_embd.weight", {D, h.n_vocab});
  output_norm_ = w.require_f32("output_norm.weight", D);
  output_ = w.optional("output.weight", {D, h.n_vocab});
  if (!output_.valid()) output_ = token_embd_;  // tied embeddings

  layers_.resize(static_cast<size_t>(h.n_layer));
  for (int64_t i = 0; i < h.n_layer; ++i) {
    const bool full = h.is_full_attention(i);
    slot_.push_back(full ? n_attention_layers_++ : n_delta_layers_++);
    load_layer(w, i, full, layers_[static_cast<size_t>(i)]);
  }
  if (h.n_nextn > 0) {
    // MTP: a full-attention block at index n_layer plus the nextn projections.
    const std::string p = "blk." + std::to_string(h.n_layer) + ".nextn.";
    mtp_.eh_proj = w.require(p + "eh_proj.weight", {2 * D, D});
    mtp_.enorm = w.require_f32(p + "enorm.weight", D);
    mtp_.hnorm = w.require_f32(p + "hnorm.weight", D);
    mtp_.shared_head_norm = w.optional_f32(p + "shared_head_norm.weight", D);
    load_layer(w, h.n_layer, true, mtp_.layer);
    has_mtp_ = true;
  }
  max_row_ = std::max({D, 2 * D, h.n_head * h.head_dim, value_width(), h.ssm_d_v,
                       h.arch == "qwen35moe" ? std::max(h.n_ff_expert, h.n_ff_shared) : h.n_ff});
  unused_ = w.unused();
}

std::unique_ptr<SequenceState> Qwen35Model::new_sequence(int64_t n_ctx, KvCacheTypes kv) const {
  if (n_ctx <= 0) fail("context size must be positive (got {})", n_ctx);
  const HParams& h = hp_;
  auto s = std::make_unique<Qwen35Sequence>();
  s->allocate_kv(n_attention_layers_, n_ctx, h.n_head_kv, h.head_dim, kv);
  s->conv_state.assign(static_cast<size_t>(n_delta_layers_ * (h.ssm_conv_kernel - 1) * conv_channels()), 0.0f);
  s->ssm_state.assign(static_cast<size_t>(n_delta_layers_ * h.ssm_n_v * h.ssm_d_k * h.ssm_d_v), 0.0f);
  return s;
}

std::unique_ptr<Workspace> Qwen35Model::new_workspace(int64_t max_tokens) const {
  if (max_tokens <= 0) fail("workspace size must be positive (got {})", max_tokens);
  const HParams& h = hp_;
  auto s = std::make_unique<Qwen35Workspace>();
  s->max_tokens = max_tokens;
  const auto T = static_cast<size_t>(max_tokens), D = static_cast<size_t>(h.n_embd);
  const auto C = static_cast<size_t>(conv_channels()), Cv = static_cast<size_t>(value_width());
  const auto Ck = static_cast<size_t>(h.ssm_n_k * h.ssm_d_k), nv = static_cast<size_t>(h.ssm_n_v);
  s->x.resize(T * D);
  s->a.resize(T * D);
  s->proj.resize(T * D);
  s->tokens.resize(T);
  s->seqs.reserve(T);
  s->attn.reserve(max_tokens, shape_, true);
  s->ffn.reserve(max_tokens, h.n_embd, layers_.front().ffn);
  for (auto* buffer : {&s->P, &s->conv}) buffer->resize(T * C);
  for (auto* buffer : {&s->z, &s->v, &s->o, &s->y}) buffer->resize(T * Cv);
  for (auto* buffer : {&s->q, &s->k}) buffer->resize(T * Ck);
  for (auto* buffer : {&s->b, &s->alpha, &s->g, &s->beta}) buffer->resize(T * nv);
  return s;
}

float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

void Qwen35Model::delta_net_block(cpu::OpContext& ctx, const DeltaNetWeights& w, int64_t slot,
                                  std::span<const SequenceInput> batch, int64_t T, Qwen35Workspace& s) const {
  const HParams& h = hp_;
  const int64_t C = conv_channels(), Cv = value_width(), nk = h.ssm_n_k, nv = h.ssm_n_v;
  const int64_t dk = h.ssm_d_k, dv = h.ssm_d_v, Ck = nk * dk, K = h.ssm_conv_kernel;
  const cpu::SharedInputMatmul projections[] = {
      {&w.qkv, s.P.data()},       // P [T][C]
      {&w.gate, s.z.data()},      // z [T][C_v]
      {&w.beta, s.b.data()},      // [T][n_v]
      {&w.alpha, s.alpha.data()}  // [T][n_v]
  };
  cpu::matmul_shared_input(ctx, s.a.data(), T, projections);
  // Causal conv per sequence, each with its own carried state.
  int64_t first = 0;
  for (const SequenceInput& in : batch) {
    auto& seq = static_cast<Qwen35Sequence&>(*in.state);
    const auto n = static_cast<int64_t>(in.tokens.size());
    cpu::conv1d_silu(s.P.data() + first * C, n, C, w.conv_taps.data(), K,
                     seq.conv_state.data() + slot * (K - 1) * C, s.conv.data() + first * C);
    first += n;
  }
  // Split q | k | v, L2-normalise q and k per head, scale q; gates.
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for (int64_t t = 0; t < T; ++t) {
    const float* row = s.conv.data() + t * C;
    for (int64_t head = 0; head < nk; ++head) {
      for (int part = 0; part < 2; ++part) {
        const float* src = row + part * Ck + head * dk;
        float* dst = (part == 0 ? s.q.data() : s.k.data()) + t * Ck + head * dk;
        float sum = 0;
        for (int64_t i = 0; i < dk; ++i) sum += src[i] * src[i];
        const float scale = (part == 0 ? q_scale : 1.0f) / std::max(std::sqrt(sum), h.rms_eps);
        for (int64_t i = 0; i < dk; ++i) dst[i] = src[i] * scale;
      }
    }
    std::copy_n(row + 2 * Ck, Cv, s.v.data() + t * Cv);
    for (int64_t j = 0; j < nv; ++j) {
      const size_t at = static_cast<size_t>(t * nv + j);
      s.beta[at] = 1.0f / (1.0f + std::exp(-s.b[at]));
      s.g[at] = w.a[static_cast<size_t>(j)] * softplus(s.alpha[at] + w.dt_bias[static_cast<size_t>(j)]);
    }
  }
  // The delta rule per sequence: chunked for prompts, token by token for decode.
  first = 0;
  for (const SequenceInput& in : batch) {
    auto& seq = static_cast<Qwen35Sequence&>(*in.state);
    const auto n = static_cast<int64_t>(in.tokens.size());
    float* state = seq.ssm_state.data() + slot * nv * dk * dv;
    const auto run = n >= 16 ? [](cpu::OpContext& c, const cpu::DeltaNetShape& sh, int64_t t, const float* q,
                                  const float* k, const float* v, const float* g, const float* b, float* st,
                                  float* o) { cpu::delta_rule_chunked(c, sh, t, q, k, v, g, b, st, o); }
                             : cpu::delta_rule_recurrent;
    run(ctx, delta_shape_, n, s.q.data() + first * Ck, s.k.data() + first * Ck, s.v.data() + first * Cv,
        s.g.data() + first * nv, s.beta.data() + first * nv, state, s.o.data() + first * Cv);
    first += n;
  }
  // Gated RMSNorm per value head, then the output projection.
  cpu::rms_norm(s.o.data(), w.norm.data(), T * nv, dv, h.rms_eps, s.y.data());
  for (int64_t i = 0; i < T * Cv; ++i) {
    const float zi = s.z[static_cast<size_t>(i)];
    s.y[static_cast<size_t>(i)] *= zi / (1.0f + std::exp(-zi));
  }
  cpu::matmul(ctx, w.out, s.y.data(), T, s.proj.data());
}

void Qwen35Model::forward(cpu::OpContext& ctx, Workspace& workspace,
                          std::span<const SequenceInput> batch) const {
  auto& s = static_cast<Qwen35Workspace&>(workspace);
  const HParams& h = hp_;
  const int64_t T = validate_batch(workspace, batch), D = h.n_embd;
  if (T == 0) return;
  embed_batch(ctx, token_embd_, batch, s.tokens, s.x.data());  // x [T][D]
  for (int64_t i = 0; i < h.n_layer; ++i) {
    const Layer& l = layers_[static_cast<size_t>(i)];
    const int64_t slot = slot_[static_cast<size_t>(i)];
    cpu::rms_norm(s.x.data(), l.attn_norm.data(), T, D, h.rms_eps, s.a.data());  // a [T][D]
    if (l.full_attention) {
      attention_sequences(batch, slot, s.seqs);
      attention_block(ctx, l.attn, shape_, s.a.data(), s.seqs, s.attn, s.proj.data());
    } else {
      delta_net_block(ctx, l.delta, slot, batch, T, s);
    }
    cpu::add(s.x.data(), s.proj.data(), T * D);
    cpu::rms_norm(s.x.data(), l.post_attention_norm.data(), T, D, h.rms_eps, s.a.data());  // m [T][D]
    ffn_block(ctx, l.ffn, s.a.data(), T, D, s.ffn, s.proj.data());
    cpu::add(s.x.data(), s.proj.data(), T * D);
  }
  finish_batch(ctx, batch, s.x.data(), D, output_norm_, h.rms_eps, output_, s.a.data());
}

}  // namespace

std::unique_ptr<Model> make_qwen35_family(const gguf::ModelFiles& files) {
  return std::make_unique<Qwen35Model>(files);
}

}  // namespace tandem::model
