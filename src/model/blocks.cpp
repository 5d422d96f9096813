#include "model/blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "quant/quantize.h"

namespace tandem::model {

void KvSequence::allocate_kv(int64_t n_attention_layers, int64_t context, int64_t n_head_kv, int64_t head_dim,
                             KvCacheTypes kv) {
  check_kv_cache_types(kv, head_dim);
  n_ctx = context;
  types = kv;
  const auto row_bytes = [&](DType t) {
    const DTypeInfo& info = dtype_info(t);
    return static_cast<size_t>(n_head_kv * head_dim / info.block_elems) * info.block_bytes;
  };
  k_row_bytes = row_bytes(kv.k);
  v_row_bytes = row_bytes(kv.v);
  k_cache.assign(static_cast<size_t>(n_attention_layers * context) * k_row_bytes, 0);
  v_cache.assign(static_cast<size_t>(n_attention_layers * context) * v_row_bytes, 0);
}

void check_kv_cache_types(KvCacheTypes kv, int64_t head_dim) {
  for (const DType t : {kv.k, kv.v}) {
    const DTypeInfo& info = dtype_info(t);
    if (!quant::can_quantize(t) || info.block_elems > 32) {
      fail("KV cache type {} is not supported (use f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1)", info.name);
    }
    if (head_dim % info.block_elems != 0) {
      fail("KV cache type {} needs a head size that is a multiple of {} (this model's is {})", info.name,
           info.block_elems, head_dim);
    }
  }
}

DType parse_kv_cache_type(std::string_view name, std::string_view what) {
  static constexpr std::pair<std::string_view, DType> kNames[] = {
      {"f32", DType::F32},   {"f16", DType::F16},   {"bf16", DType::BF16}, {"q8_0", DType::Q8_0},
      {"q4_0", DType::Q4_0}, {"q4_1", DType::Q4_1}, {"q5_0", DType::Q5_0}, {"q5_1", DType::Q5_1}};
  for (const auto& [n, t] : kNames) {
    if (n == name) return t;
  }
  fail("{}: unknown KV cache type '{}' (use f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1)", what, name);
}

void attention_sequences(std::span<const SequenceInput> batch, int64_t slot, std::vector<AttentionSequence>& out) {
  out.clear();
  for (const SequenceInput& in : batch) {
    auto& seq = static_cast<KvSequence&>(*in.state);
    const auto rows = static_cast<size_t>(slot * seq.n_ctx);
    out.push_back({{seq.k_cache.data() + rows * seq.k_row_bytes, seq.types.k, seq.k_row_bytes},
                   {seq.v_cache.data() + rows * seq.v_row_bytes, seq.types.v, seq.v_row_bytes},
                   seq.n_past,
                   static_cast<int64_t>(in.tokens.size())});
  }
}

void AttentionScratch::reserve(int64_t max_tokens, const AttentionShape& shape, bool gated) {
  const auto T = static_cast<size_t>(max_tokens);
  const auto q_dim = static_cast<size_t>(shape.n_head * shape.head_dim);
  const auto kv_dim = static_cast<size_t>(shape.n_head_kv * shape.head_dim);
  if (gated) qg.resize(T * 2 * q_dim);
  q.resize(T * q_dim);
  k.resize(T * kv_dim);
  v.resize(T * kv_dim);
  attn.resize(T * q_dim);
  positions.resize(T);
}

void attention_block(cpu::OpContext& ctx, const AttentionWeights& w, const AttentionShape& shape,
                     const float* a, std::span<const AttentionSequence> seqs, AttentionScratch& s,
                     float* out) {
  int64_t T = 0;
  for (const AttentionSequence& seq : seqs) {
    for (int64_t i = 0; i < seq.n_tokens; ++i) s.positions[static_cast<size_t>(T++)] = static_cast<int32_t>(seq.n_past + i);
  }
  const int64_t H = shape.n_head, d = shape.head_dim, q_dim = H * d, kv_dim = shape.n_head_kv * d;
  // q, k and v from one quantization of the input, in one parallel pass where they share
  // an activation type. A gated q projection holds [q_h | gate_h] per head: it goes to qg
  // and q is split out of it.
  auto bias = [](const std::vector<float>& b) { return b.empty() ? nullptr : b.data(); };
  const cpu::SharedInputMatmul qkv[] = {{&w.wq, w.gated ? s.qg.data() : s.q.data(), bias(w.bq)},
                                        {&w.wk, s.k.data(), bias(w.bk)},
                                        {&w.wv, s.v.data(), bias(w.bv)}};
  cpu::matmul_shared_input(ctx, a, T, qkv);
  if (w.gated) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const float* src = s.qg.data() + (t * H + h) * 2 * d;
        std::copy_n(src, d, s.q.data() + (t * H + h) * d);
      }
    }
  }
  if (!w.q_norm.empty()) cpu::rms_norm(s.q.data(), w.q_norm.data(), T * H, d, shape.rms_eps, s.q.data());
  if (!w.k_norm.empty()) {
    cpu::rms_norm(s.k.data(), w.k_norm.data(), T * shape.n_head_kv, d, shape.rms_eps, s.k.data());
  }
  const std::span<const int32_t> pos(s.positions.data(), static_cast<size_t>(T));
  cpu::rope_neox(s.q.data(), T, H, d, shape.n_rot, pos, shape.rope_base);
  cpu::rope_neox(s.k.data(), T, shape.n_head_kv, d, shape.n_rot, pos, shape.rope_base);
  // Each sequence appends to its own cache (in the cache's type) and attends only to it.
  ctx.reserve_context(ctx.max_context(), H / shape.n_head_kv);
  int64_t first = 0;
  for (const AttentionSequence& seq : seqs) {
    const int64_t n = seq.n_tokens;
    for (int64_t i = 0; i < n; ++i) {
      const size_t row = static_cast<size_t>(seq.n_past + i);
      quant::quantize_row(seq.k.type, s.k.data() + (first + i) * kv_dim, seq.k.data + row * seq.k.row_bytes, kv_dim);
      quant::quantize_row(seq.v.type, s.v.data() + (first + i) * kv_dim, seq.v.data + row * seq.v.row_bytes, kv_dim);
    }
    cpu::attention(ctx, s.q.data() + first * q_dim, n, H, shape.n_head_kv, d, seq.k, seq.v,
                   pos.subspan(static_cast<size_t>(first), static_cast<size_t>(n)),
                   s.attn.data() + first * q_dim);
    first += n;
  }
  if (w.gated) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const float* gate = s.qg.data() + (t * H + h) * 2 * d + d;
        float* o = s.attn.data() + (t * H + h) * d;
        for (int64_t i = 0; i < d; ++i) o[i] *= 1.0f / (1.0f + std::exp(-gate[i]));
      }
    }
  }
  cpu::matmul(ctx, w.wo, s.attn.data(), T, out);
}

void FfnScratch::reserve(int64_t max_tokens, int64_t n_embd, const FfnWeights& w) {
  const auto T = static_cast<size_t>(max_tokens), D = static_cast<size_t>(n_embd);
  int64_t width = w.is_moe() ? w.gate_exps.ne[1] : w.gate.ne[1];
  if (w.gate_shexp.valid()) width = std::max(width, w.gate_shexp.ne[1]);
  ffn_a.resize(T * static_cast<size_t>(width));
  ffn_b.resize(T * static_cast<size_t>(width));
  if (!w.is_moe()) return;
  const auto E = static_cast<size_t>(w.router.ne[1]), k = static_cast<size_t>(w.n_expert_used);
  router_logits.resize(T * E);
  chosen.resize(T * k);
  chosen_weight.resize(T * k);
  expert_tokens.reserve(std::max(T, E));
  expert_weights.reserve(T);
  expert_in.resize(T * D);
  expert_out.resize(T * D);
  if (w.gate_shexp.valid()) shared.resize(T * D);
  const cpu::QuantDotKernel kg = cpu::quant_dot_kernel(w.gate_exps.type), ku = cpu::quant_dot_kernel(w.up_exps.type),
                            kd = cpu::quant_dot_kernel(w.down_exps.type);
  grouped = kg && ku && kd && kg.activation == ku.activation;
  if (!grouped) return;
  const auto F = static_cast<size_t>(w.gate_exps.ne[1]), slots = T * k;
  expert_first.resize(E + 1);
  slot_token.resize(slots);
  slot_weight.resize(slots);
  slot_gate.resize(slots * F);
  slot_up.resize(slots * F);
  slot_out.resize(slots * D);
  act_in.resize(T * cpu::activation_row_bytes(kg, static_cast<int64_t>(D)));
  slot_act.resize(slots * cpu::activation_row_bytes(kg, static_cast<int64_t>(D)));
  slot_down_act.resize(slots * cpu::activation_row_bytes(kd, static_cast<int64_t>(F)));
  active_experts.reserve(E);
}

namespace {

void swiglu_ffn(cpu::OpContext& ctx, const Tensor& gate, const Tensor& up, const Tensor& down,
                const float* m, int64_t T, FfnScratch& s, float* out) {
  const cpu::SharedInputMatmul gate_up[] = {{&gate, s.ffn_a.data()}, {&up, s.ffn_b.data()}};
  cpu::matmul_shared_input(ctx, m, T, gate_up);
  cpu::swiglu(s.ffn_a.data(), s.ffn_b.data(), T * gate.ne[1], s.ffn_a.data());
  cpu::matmul(ctx, down, s.ffn_a.data(), T, out);
}

// Softmax over all experts, keep the k most probable, renormalise over those k (what
// llama.cpp does for qwen3moe and qwen35moe); ties go to the lower expert index.
void route(const FfnWeights& w, int64_t T, FfnScratch& s) {
  const int64_t E = w.router.ne[1], k = w.n_expert_used;
  for (int64_t t = 0; t < T; ++t) {
    float* p = s.router_logits.data() + t * E;
    cpu::softmax(p, E);
    int32_t* chosen = s.chosen.data() + t * k;
    float* weight = s.chosen_weight.data() + t * k;
    float sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e) {
        if (std::find(chosen, chosen + j, static_cast<int32_t>(e)) != chosen + j) continue;
        if (best < 0 || p[e] > p[best]) best = e;
      }
      chosen[j] = static_cast<int32_t>(best);
      weight[j] = p[best];
      sum += p[best];
    }
    sum = std::max(sum, 6.1035e-5f);  // as llama.cpp: never divide by ~0
    for (int64_t j = 0; j < k; ++j) weight[j] /= sum;
  }
}

// The float path (F32/F16 experts, or float activations forced): one expert at a time.
void moe_per_expert(cpu::OpContext& ctx, const FfnWeights& w, const float* m, int64_t T, int64_t D, FfnScratch& s,
                    float* out) {
  const int64_t E = w.router.ne[1], k = w.n_expert_used;
  for (int64_t e = 0; e < E; ++e) {
    s.expert_tokens.clear();
    s.expert_weights.clear();
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < k; ++j) {
        if (s.chosen[static_cast<size_t>(t * k + j)] == e) {
          s.expert_tokens.push_back(static_cast<int32_t>(t));
          s.expert_weights.push_back(s.chosen_weight[static_cast<size_t>(t * k + j)]);
        }
      }
    }
    const auto n = static_cast<int64_t>(s.expert_tokens.size());
    if (n == 0) continue;
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(m + s.expert_tokens[static_cast<size_t>(i)] * D, D, s.expert_in.data() + i * D);
    }
    swiglu_ffn(ctx, w.gate_exps.matrix(e), w.up_exps.matrix(e), w.down_exps.matrix(e), s.expert_in.data(), n,
               s, s.expert_out.data());
    for (int64_t i = 0; i < n; ++i) {
      float* dst = out + s.expert_tokens[static_cast<size_t>(i)] * D;
      const float* src = s.expert_out.data() + i * D;
      const float wgt = s.expert_weights[static_cast<size_t>(i)];
      for (int64_t c = 0; c < D; ++c) dst[c] += wgt * src[c];
    }
  }
}

// The routed experts with integer kernels, fused: inputs are quantized once per token,
// the (token, expert) slots sorted by expert, and then each chosen expert is one job of a
// single parallel pass that runs its gate and up over its tokens, SiLU, quantizes the
// result and runs its down -- one hand-off per layer, and the expert's intermediate rows
// stay in the cache of the thread that made them. Jobs go out busiest expert first.
void moe_grouped(cpu::OpContext& ctx, const FfnWeights& w, const float* m, int64_t T, int64_t D, FfnScratch& s,
                 float* out) {
  const int64_t E = w.router.ne[1], k = w.n_expert_used, F = w.gate_exps.ne[1];
  // Counting sort of the T*k (token, expert) slots by expert.
  std::fill(s.expert_first.begin(), s.expert_first.end(), 0);
  for (int64_t i = 0; i < T * k; ++i) ++s.expert_first[static_cast<size_t>(s.chosen[static_cast<size_t>(i)]) + 1];
  for (int64_t e = 0; e < E; ++e) s.expert_first[static_cast<size_t>(e + 1)] += s.expert_first[static_cast<size_t>(e)];
  s.expert_tokens.assign(s.expert_first.begin(), s.expert_first.end() - 1);  // next free slot per expert
  for (int64_t i = 0; i < T * k; ++i) {
    const auto slot = static_cast<size_t>(s.expert_tokens[static_cast<size_t>(s.chosen[static_cast<size_t>(i)])]++);
    s.slot_token[slot] = static_cast<int32_t>(i / k);
    s.slot_weight[slot] = s.chosen_weight[static_cast<size_t>(i)];
  }
  const cpu::QuantDotKernel &kg = ctx.kernel(w.gate_exps.type), &ku = ctx.kernel(w.up_exps.type),
                            &kd = ctx.kernel(w.down_exps.type);
  const size_t in_row = cpu::activation_row_bytes(kg, D), down_row = cpu::activation_row_bytes(kd, F);
  cpu::quantize_activations(ctx, w.gate_exps.type, m, T, D, s.act_in.data());
  for (int64_t i = 0; i < T * k; ++i) {
    std::memcpy(s.slot_act.data() + static_cast<size_t>(i) * in_row,
                s.act_in.data() + static_cast<size_t>(s.slot_token[static_cast<size_t>(i)]) * in_row, in_row);
  }
  // The chosen experts, most tokens first (the long jobs start early, the short ones fill in).
  s.active_experts.clear();
  for (int64_t e = 0; e < E; ++e) {
    if (s.expert_first[static_cast<size_t>(e + 1)] > s.expert_first[static_cast<size_t>(e)]) {
      s.active_experts.push_back(static_cast<int32_t>(e));
    }
  }
  auto n_slots = [&](int32_t e) {
    return s.expert_first[static_cast<size_t>(e) + 1] - s.expert_first[static_cast<size_t>(e)];
  };
  std::sort(s.active_experts.begin(), s.active_experts.end(), [&](int32_t a, int32_t b) {
    return n_slots(a) != n_slots(b) ? n_slots(a) > n_slots(b) : a < b;  // in place: no allocation
  });
  ctx.pool().parallel_for(
      static_cast<int64_t>(s.active_experts.size()),
      [&](int, int64_t begin, int64_t end) {
        for (int64_t j = begin; j < end; ++j) {
          const int32_t e = s.active_experts[static_cast<size_t>(j)];
          const int64_t first = s.expert_first[static_cast<size_t>(e)], n = n_slots(e);
          float* gate = s.slot_gate.data() + first * F;
          float* up = s.slot_up.data() + first * F;
          const uint8_t* act = s.slot_act.data() + static_cast<size_t>(first) * in_row;
          cpu::matmul_serial(kg, {w.gate_exps.matrix(e), act, n, gate});
          cpu::matmul_serial(ku, {w.up_exps.matrix(e), act, n, up});
          cpu::swiglu(gate, up, n * F, gate);
          uint8_t* down_act = s.slot_down_act.data() + static_cast<size_t>(first) * down_row;
          for (int64_t i = 0; i < n; ++i) kd.quantize(gate + i * F, down_act + static_cast<size_t>(i) * down_row, F);
          cpu::matmul_serial(kd, {w.down_exps.matrix(e), down_act, n, s.slot_out.data() + first * D});
        }
      },
      1);
  // Weighted sum into each token's row, in slot order (a fixed order: results do not depend
  // on threads).
  for (int64_t i = 0; i < T * k; ++i) {
    float* dst = out + static_cast<int64_t>(s.slot_token[static_cast<size_t>(i)]) * D;
    const float* src = s.slot_out.data() + i * D;
    const float wgt = s.slot_weight[static_cast<size_t>(i)];
    for (int64_t c = 0; c < D; ++c) dst[c] += wgt * src[c];
  }
}

}  // namespace

void ffn_block(cpu::OpContext& ctx, const FfnWeights& w, const float* m, int64_t T, int64_t D,
               FfnScratch& s, float* out) {
  if (!w.is_moe()) {
    swiglu_ffn(ctx, w.gate, w.up, w.down, m, T, s, out);
    return;
  }
  cpu::matmul(ctx, w.router, m, T, s.router_logits.data());
  route(w, T, s);
  std::fill(out, out + T * D, 0.0f);
  // Each expert runs once over all tokens routed to it; decode reads only chosen experts.
  if (s.grouped && ctx.kernel(w.gate_exps.type)) {
    moe_grouped(ctx, w, m, T, D, s, out);
  } else {
    moe_per_expert(ctx, w, m, T, D, s, out);
  }
  if (w.gate_shexp.valid()) {
    swiglu_ffn(ctx, w.gate_shexp, w.up_shexp, w.down_shexp, m, T, s, s.shared.data());
    for (int64_t t = 0; t < T; ++t) {
      float logit = 0;
      for (int64_t c = 0; c < D; ++c) logit += w.shexp_gate[static_cast<size_t>(c)] * m[t * D + c];
      const float gate = 1.0f / (1.0f + std::exp(-logit));
      for (int64_t c = 0; c < D; ++c) out[t * D + c] += gate * s.shared[static_cast<size_t>(t * D + c)];
    }
  }
}

void embed_batch(cpu::OpContext& ctx, const Tensor& token_embd, std::span<const SequenceInput> batch,
                 std::vector<int32_t>& tokens, float* x) {
  size_t at = 0;
  for (const SequenceInput& in : batch) {
    ctx.reserve_context(in.state->n_ctx);
    for (int32_t token : in.tokens) tokens[at++] = token;
  }
  cpu::embed(token_embd, std::span<const int32_t>(tokens.data(), at), x);
}

void finish_batch(cpu::OpContext& ctx, std::span<const SequenceInput> batch, const float* x, int64_t D,
                  const std::vector<float>& output_norm, float rms_eps, const Tensor& output, float* scratch) {
  int64_t first = 0;
  for (const SequenceInput& in : batch) {
    const auto n = static_cast<int64_t>(in.tokens.size());
    if (n == 0) continue;
    const int64_t from = in.all_logits ? first : first + n - 1, rows = first + n - from;
    cpu::rms_norm(x + from * D, output_norm.data(), rows, D, rms_eps, scratch);
    cpu::matmul(ctx, output, scratch, rows, in.logits);
    first += n;
  }
  for (const SequenceInput& in : batch) in.state->n_past += static_cast<int64_t>(in.tokens.size());
}

}  // namespace tandem::model
