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
// not run by the trunk: mtp_forward runs it for speculative decoding (MODELS.md section 8).
#include <algorithm>
#include <cmath>
#include <utility>

#include "backend/cpu/delta_net.h"
#include "core/error.h"
#include "model/blocks.h"
#include "model/model.h"
#include "model/model_registry.h"
#include "model/weight_loader.h"

namespace tandem::model {
namespace {

struct Layer {
  bool full_attention = false;
  std::vector<float> attn_norm, post_attention_norm;  // [D]
  AttentionWeights attn;
  DeltaNetWeights delta;
  FfnWeights ffn;
};

// The MTP draft block (run by mtp_forward, never by the trunk).
struct MtpBlock {
  Tensor eh_proj;                     // {2D, D}
  std::vector<float> enorm, hnorm, shared_head_norm;
  Layer layer;
};

// KV cache for the full-attention layers plus the DeltaNet layers' recurrent state, each
// in the memory of its layer's device.
//
// Speculative rollback (SequenceState::rollback): a sequence that speculates gets, per
// DeltaNet layer, a second conv and ssm buffer (*_alt) and a record of a verify pass's
// per-position inputs. A verify pass reads the state from the current buffers and writes
// the advanced one to the alt buffers (the kernels copy each head's block just before
// updating it, so it costs what an in-place pass costs), then the two swap. The conv state
// before the pass stays intact in conv_alt; ssm_alt gets the recurrent state after the
// pass's first token instead (written while each head's block is in cache; the first token
// was sampled before the pass, so it is always kept). Keeping every token costs nothing
// more; keeping only the first swaps the ssm buffers back (the usual rejection, without
// re-running anything); keeping more re-runs the recurrence from ssm_alt over the recorded
// inputs of positions 1..keep-1.
class Qwen35Sequence : public KvSequence {
 public:
  std::vector<Memory> conv_state, ssm_state;  // [slot]: [(K-1)*C], [n_v][d_k][d_v] (current)
  std::vector<Backend*> state_backend;        // [slot]: who can zero them
  std::vector<Memory> conv_alt, ssm_alt;      // [slot]: the other half of the ping-pong
  std::vector<Memory> record_memory;          // [slot]: P, q, k, v, g, beta for record_capacity tokens
  std::vector<DeltaNetRecord> records;        // [slot]: views into record_memory
  int64_t record_capacity = 0;
  DeltaNetShape shape{};
  int64_t conv_kernel = 0;

  int64_t conv_channels() const { return 2 * shape.n_k * shape.d_k + shape.n_v * shape.d_v; }
  void clear() override {
    n_past = 0;
    verify_tokens = 0;
    for (size_t i = 0; i < conv_state.size(); ++i) {
      state_backend[i]->zero(conv_state[i].as(), conv_state[i].bytes());
      state_backend[i]->zero(ssm_state[i].as(), ssm_state[i].bytes());
    }
  }
  bool has_recurrent_state() const override { return !conv_state.empty(); }
  size_t recurrent_state_bytes() const override {
    size_t n = 0;
    for (size_t i = 0; i < conv_state.size(); ++i) n += conv_state[i].bytes() + ssm_state[i].bytes();
    return n;
  }
  void save_recurrent_state(uint8_t* out) const override {
    // A prompt-cache checkpoint of a state that a pending rollback may still cut back would
    // describe tokens the context may not keep.
    if (verify_tokens > 0) fail("save_recurrent_state: a verify pass of {} tokens is not settled yet", verify_tokens);
    for (size_t i = 0; i < conv_state.size(); ++i) {
      state_backend[i]->copy_to_host(out, conv_state[i].as(), conv_state[i].bytes());
      out += conv_state[i].bytes();
      state_backend[i]->copy_to_host(out, ssm_state[i].as(), ssm_state[i].bytes());
      out += ssm_state[i].bytes();
    }
  }
  void load_recurrent_state(const uint8_t* in) override {
    verify_tokens = 0;  // the record no longer describes the state
    for (size_t i = 0; i < conv_state.size(); ++i) {
      state_backend[i]->copy_from_host(conv_state[i].as(), in, conv_state[i].bytes());
      in += conv_state[i].bytes();
      state_backend[i]->copy_from_host(ssm_state[i].as(), in, ssm_state[i].bytes());
      in += ssm_state[i].bytes();
    }
  }
  void prepare_rollback(int64_t max_tokens) override {
    if (max_tokens <= record_capacity || conv_state.empty()) return;
    if (verify_tokens > 0) fail("prepare_rollback: a verify pass of {} tokens is not settled yet", verify_tokens);
    const int64_t C = conv_channels(), Ck = shape.n_k * shape.d_k, Cv = shape.n_v * shape.d_v, nv = shape.n_v;
    const int64_t per_token = C + 2 * Ck + Cv + 2 * nv;
    conv_alt.resize(conv_state.size());
    ssm_alt.resize(ssm_state.size());
    record_memory.resize(conv_state.size());
    records.resize(conv_state.size());
    for (size_t i = 0; i < conv_state.size(); ++i) {
      Backend& b = *state_backend[i];
      if (conv_alt[i].as() == nullptr) {
        conv_alt[i] = b.allocate(conv_state[i].bytes());
        ssm_alt[i] = b.allocate(ssm_state[i].bytes());
      }
      record_memory[i] = b.allocate(static_cast<size_t>(max_tokens * per_token) * sizeof(float));
      float* at = record_memory[i].as<float>();
      auto take = [&](int64_t width) { return std::exchange(at, at + max_tokens * width); };
      DeltaNetRecord& r = records[i];
      r.P = take(C);
      r.q = take(Ck);
      r.k = take(Ck);
      r.v = take(Cv);
      r.g = take(nv);
      r.beta = take(nv);
    }
    record_capacity = max_tokens;
  }
  int64_t rollback_capacity() const override { return conv_state.empty() ? INT64_MAX : record_capacity; }
  // After a verify pass: the advanced state becomes current, the one before it the alt.
  void swap_after_verify() {
    std::swap(conv_state, conv_alt);
    std::swap(ssm_state, ssm_alt);
  }

 protected:
  void rollback_recurrent(int64_t keep) override {
    if (keep < 1 && !conv_state.empty()) fail("rollback: a verify pass keeps at least its first token (the state before it is not kept)");
    for (size_t i = 0; i < conv_state.size(); ++i) {
      if (keep == 1) std::swap(ssm_state[i], ssm_alt[i]);  // the state after the first token, as it is
      float* ssm = ssm_state[i].as<float>();
      state_backend[i]->delta_net_rollback(shape, conv_kernel,
                                           {conv_alt[i].as<float>(), keep == 1 ? ssm : ssm_alt[i].as<float>(),
                                            conv_state[i].as<float>(), ssm, records[i], keep});
    }
  }
};

class Qwen35Model final : public Model {
 public:
  explicit Qwen35Model(const gguf::ModelFiles& files);
  int64_t max_row() const override { return max_row_; }
  std::unique_ptr<SequenceState> new_sequence(const Backends& be, int64_t n_ctx, KvCacheTypes kv) const override;
  std::unique_ptr<Workspace> new_workspace(const Backends& be, int64_t max_tokens) const override;
  void forward(const Backends& be, Workspace& workspace, std::span<const SequenceInput> batch) const override;
  bool has_mtp() const override { return has_mtp_; }
  std::unique_ptr<SequenceState> new_mtp_sequence(const Backends& be, int64_t n_ctx, KvCacheTypes kv) const override;
  void mtp_forward(const Backends& be, Workspace& workspace, const MtpInput& in) const override;

 private:
  // One layer (trunk or MTP) on the residual x [T][D]; slot: its index among layers of its kind.
  void run_layer(const Backends& be, LayerWorkspace& ws, const Layer& l, LayerPlacement at, int64_t slot,
                 std::span<const SequenceInput> batch, int64_t T) const;
  void load_layer(WeightLoader& w, int64_t index, bool full_attention, Layer& l) const;

  int64_t conv_channels() const { return 2 * hp_.ssm_n_k * hp_.ssm_d_k + hp_.ssm_n_v * hp_.ssm_d_v; }
  int64_t value_width() const { return hp_.ssm_n_v * hp_.ssm_d_v; }

  AttentionShape shape_;
  DeltaNetShape delta_shape_;
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
    l.delta.conv_kernel = h.ssm_conv_kernel;
    l.delta.rms_eps = h.rms_eps;
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
  placement_.assign(layers_.size(), LayerPlacement{});
}

std::unique_ptr<SequenceState> Qwen35Model::new_sequence(const Backends& be, int64_t n_ctx, KvCacheTypes kv) const {
  if (n_ctx <= 0) fail("context size must be positive (got {})", n_ctx);
  const HParams& h = hp_;
  auto s = std::make_unique<Qwen35Sequence>();
  s->shape = delta_shape_;
  s->conv_kernel = h.ssm_conv_kernel;
  std::vector<Device> attention_devices;
  const auto conv_bytes = static_cast<size_t>((h.ssm_conv_kernel - 1) * conv_channels()) * sizeof(float);
  const auto ssm_bytes = static_cast<size_t>(h.ssm_n_v * h.ssm_d_k * h.ssm_d_v) * sizeof(float);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Device d = placement_[i].main;
    if (layers_[i].full_attention) {
      attention_devices.push_back(d);
    } else {
      s->conv_state.push_back(be.on(d).allocate(conv_bytes));
      s->ssm_state.push_back(be.on(d).allocate(ssm_bytes));
      s->state_backend.push_back(&be.on(d));
    }
  }
  s->allocate_kv(be, attention_devices, n_ctx, h.n_head_kv, h.head_dim, kv);
  return s;
}

std::unique_ptr<Workspace> Qwen35Model::new_workspace(const Backends& be, int64_t max_tokens) const {
  if (max_tokens <= 0) fail("workspace size must be positive (got {})", max_tokens);
  const HParams& h = hp_;
  auto ws = std::make_unique<LayerWorkspace>();
  std::vector<LayerPlacement> devices = placement_;  // every device a layer of this model may run on
  if (has_mtp_) devices.push_back(mtp_placement_);
  allocate_workspace(be, devices, output_device_, max_tokens, h.n_embd, h.n_expert_used, expert_streaming_, *ws);
  for (size_t i = 0; i < layers_.size(); ++i) {
    Backend& main = be.on(placement_[i].main);
    if (layers_[i].full_attention) {
      main.reserve_attention(max_tokens, shape_, true);
    } else {
      main.reserve_delta_net(max_tokens, delta_shape_, h.ssm_conv_kernel);
    }
    main.reserve_ffn(max_tokens, h.n_embd, layers_[i].ffn);
    be.on(placement_[i].experts).reserve_ffn(max_tokens, h.n_embd, layers_[i].ffn);
  }
  if (has_mtp_) {  // its input part on the CPU, its layer where the placement says
    be.on(mtp_placement_.main).reserve_attention(max_tokens, shape_, true);
    be.on(mtp_placement_.main).reserve_ffn(max_tokens, h.n_embd, mtp_.layer.ffn);
    be.on(mtp_placement_.experts).reserve_ffn(max_tokens, h.n_embd, mtp_.layer.ffn);
    ws->mtp_concat.resize(static_cast<size_t>(max_tokens * 2 * h.n_embd));
  }
  return ws;
}

void Qwen35Model::forward(const Backends& be, Workspace& workspace, std::span<const SequenceInput> batch) const {
  auto& ws = static_cast<LayerWorkspace&>(workspace);
  const HParams& h = hp_;
  const int64_t T = validate_batch(workspace, batch), D = h.n_embd;
  if (T == 0) return;
  embed_batch(be, ws, token_embd_, batch);  // x [T][D]
  for (int64_t i = 0; i < h.n_layer; ++i) {
    const auto at = static_cast<size_t>(i);
    run_layer(be, ws, layers_[at], placement_[at], slot_[at], batch, T);
  }
  finish_batch(be, ws, batch, D, output_norm_, h.rms_eps, output_, output_device_);
  for (const SequenceInput& in : batch) {
    auto& seq = static_cast<Qwen35Sequence&>(*in.state);
    if (in.verify && seq.has_recurrent_state()) seq.swap_after_verify();
  }
}

void Qwen35Model::run_layer(const Backends& be, LayerWorkspace& ws, const Layer& l, LayerPlacement at, int64_t slot,
                            std::span<const SequenceInput> batch, int64_t T) const {
  const HParams& h = hp_;
  const int64_t D = h.n_embd;
  Backend& b = enter(be, ws, at.main, T, D);
  DeviceActivations& act = ws.on(at.main);
  float *x = act.x.as<float>(), *a = act.a.as<float>(), *proj = act.proj.as<float>();
  b.rms_norm(x, l.attn_norm, T, D, h.rms_eps, a);  // a [T][D]
  if (l.full_attention) {
    attention_sequences(batch, slot, ws.seqs);
    b.attention(l.attn, shape_, a, ws.seqs, proj);
  } else {
    ws.delta_seqs.clear();
    for (const SequenceInput& in : batch) {
      auto& seq = static_cast<Qwen35Sequence&>(*in.state);
      const auto s = static_cast<size_t>(slot);
      const auto n = static_cast<int64_t>(in.tokens.size());
      if (in.verify) {  // current -> alt, recorded (the buffers swap after the pass)
        ws.delta_seqs.push_back({seq.conv_alt[s].as<float>(), seq.ssm_alt[s].as<float>(), n,
                                 seq.conv_state[s].as<float>(), seq.ssm_state[s].as<float>(), &seq.records[s],
                                 seq.ssm_state[s].as<float>()});
      } else {
        ws.delta_seqs.push_back({seq.conv_state[s].as<float>(), seq.ssm_state[s].as<float>(), n});
      }
    }
    b.delta_net(l.delta, delta_shape_, a, ws.delta_seqs, proj);
  }
  b.add(x, proj, T * D);
  b.rms_norm(x, l.post_attention_norm, T, D, h.rms_eps, a);  // m [T][D]
  ffn_block(be, ws, l.ffn, at, T, D);                        // proj = FFN(m)
  b.add(x, proj, T * D);
}

std::unique_ptr<SequenceState> Qwen35Model::new_mtp_sequence(const Backends& be, int64_t n_ctx,
                                                             KvCacheTypes kv) const {
  if (!has_mtp_) return Model::new_mtp_sequence(be, n_ctx, kv);
  if (n_ctx <= 0) fail("context size must be positive (got {})", n_ctx);
  auto s = std::make_unique<KvSequence>();
  const Device on[] = {mtp_placement_.main};  // the block's KV where its layer runs
  s->allocate_kv(be, on, n_ctx, hp_.n_head_kv, hp_.head_dim, kv);
  return s;
}

// MODELS.md section 8: c = [rms(embed(x_p); enorm) ; rms(h_{p-1}; hnorm)], u = eh_proj c, one
// full-attention layer over the block's own cache, then the shared head's norm (or
// output_norm) and the output head.
void Qwen35Model::mtp_forward(const Backends& be, Workspace& workspace, const MtpInput& in) const {
  if (!has_mtp_) Model::mtp_forward(be, workspace, in);
  auto& ws = static_cast<LayerWorkspace&>(workspace);
  const HParams& h = hp_;
  SequenceInput seq;
  seq.state = in.state;
  seq.tokens = in.tokens;
  float no_logits = 0;  // validate_batch wants a buffer; without logits the head is skipped
  seq.logits = in.logits != nullptr ? in.logits : &no_logits;
  seq.all_logits = in.all_logits;
  seq.head_rows = in.head_rows;
  const std::span<const SequenceInput> batch(&seq, 1);
  const int64_t T = validate_batch(workspace, batch), D = h.n_embd;
  if (T == 0) return;
  if (in.hidden == nullptr) fail("mtp_forward: no hidden states");
  embed_batch(be, ws, token_embd_, batch);  // x = embeddings [T][D] on the CPU
  Backend& b = *be.cpu;
  DeviceActivations& act = ws.on(Device::Cpu);
  float *x = act.x.as<float>(), *a = act.a.as<float>(), *proj = act.proj.as<float>();
  b.rms_norm(x, mtp_.enorm, T, D, h.rms_eps, a);
  b.rms_norm(in.hidden, mtp_.hnorm, T, D, h.rms_eps, proj);
  float* c = ws.mtp_concat.data();  // [T][2D]: the embedding half first
  for (int64_t t = 0; t < T; ++t) {
    std::copy(a + t * D, a + (t + 1) * D, c + t * 2 * D);
    std::copy(proj + t * D, proj + (t + 1) * D, c + t * 2 * D + D);
  }
  b.linear(mtp_.eh_proj, c, T, x);
  run_layer(be, ws, mtp_.layer, mtp_placement_, 0, batch, T);  // its own cache: attention slot 0
  const std::vector<float>& norm = mtp_.shared_head_norm.empty() ? output_norm_ : mtp_.shared_head_norm;
  if (in.hidden_out != nullptr) {  // on the CPU: the next guess's input part runs there
    enter(be, ws, Device::Cpu, T, D);
    b.rms_norm(x, norm, T, D, h.rms_eps, in.hidden_out);
  }
  if (in.logits == nullptr) {
    in.state->n_past += T;
    return;
  }
  finish_batch(be, ws, batch, D, norm, h.rms_eps, output_, output_device_);
}

}  // namespace

std::unique_ptr<Model> make_qwen35_family(const gguf::ModelFiles& files) {
  return std::make_unique<Qwen35Model>(files);
}

}  // namespace tandem::model
