#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/delta_net.h"
#include "core/error.h"
#include "quant/quantize.h"

namespace tandem::cpu {
namespace {

// Grows only: scratch is sized for the largest batch once, then reused.
template <class T>
void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

void release_host(void* p) { std::free(p); }

}  // namespace

Memory CpuBackend::allocate(size_t bytes) {
  if (bytes == 0) return {};
  void* p = std::calloc(bytes, 1);
  if (p == nullptr) fail("cannot allocate {} bytes of host memory", bytes);
  return Memory(p, bytes, release_host);
}

void CpuBackend::zero(void* dst, size_t bytes) { std::memset(dst, 0, bytes); }

void CpuBackend::copy_from_host(void* dst, const void* src, size_t bytes) {
  if (dst != src) std::memcpy(dst, src, bytes);
}

void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (dst != src) std::memcpy(dst, src, bytes);
}

void CpuBackend::reserve_attention(int64_t max_tokens, const AttentionShape& shape, bool gated) {
  const auto T = static_cast<size_t>(max_tokens);
  const auto q_dim = static_cast<size_t>(shape.n_head * shape.head_dim);
  const auto kv_dim = static_cast<size_t>(shape.n_head_kv * shape.head_dim);
  if (gated) grow(attn_.qg, T * 2 * q_dim);
  grow(attn_.q, T * q_dim);
  grow(attn_.k, T * kv_dim);
  grow(attn_.v, T * kv_dim);
  grow(attn_.out, T * q_dim);
  grow(attn_.positions, T);
}

void CpuBackend::reserve_delta_net(int64_t max_tokens, const DeltaNetShape& shape, int64_t conv_kernel) {
  const auto T = static_cast<size_t>(max_tokens);
  const auto Ck = static_cast<size_t>(shape.n_k * shape.d_k), Cv = static_cast<size_t>(shape.n_v * shape.d_v);
  const size_t C = 2 * Ck + Cv, nv = static_cast<size_t>(shape.n_v);
  for (auto* b : {&delta_.P, &delta_.conv}) grow(*b, T * C);
  for (auto* b : {&delta_.z, &delta_.v, &delta_.o, &delta_.y}) grow(*b, T * Cv);
  for (auto* b : {&delta_.q, &delta_.k}) grow(*b, T * Ck);
  for (auto* b : {&delta_.b, &delta_.alpha, &delta_.g, &delta_.beta}) grow(*b, T * nv);
}

void CpuBackend::reserve_ffn(int64_t max_tokens, int64_t n_embd, const FfnWeights& w) {
  const auto T = static_cast<size_t>(max_tokens), D = static_cast<size_t>(n_embd);
  int64_t width = w.is_moe() ? w.gate_exps.ne[1] : w.gate.ne[1];
  if (w.gate_shexp.valid()) width = std::max(width, w.gate_shexp.ne[1]);
  grow(ffn_.a, T * static_cast<size_t>(width));
  grow(ffn_.b, T * static_cast<size_t>(width));
  if (!w.is_moe()) return;
  const auto E = static_cast<size_t>(w.router.ne[1]), k = static_cast<size_t>(w.n_expert_used);
  grow(ffn_.router_logits, T * E);
  ffn_.expert_tokens.reserve(std::max(T * k, E));
  ffn_.expert_weights.reserve(T);
  grow(ffn_.expert_in, T * D);
  grow(ffn_.expert_out, T * D);
  const QuantDotKernel kg = quant_dot_kernel(w.gate_exps.type), ku = quant_dot_kernel(w.up_exps.type),
                       kd = quant_dot_kernel(w.down_exps.type);
  if (!(kg && ku && kd && kg.activation == ku.activation)) return;  // experts take the float path
  const auto F = static_cast<size_t>(w.gate_exps.ne[1]), slots = T * k;
  grow(ffn_.expert_first, E + 1);
  grow(ffn_.slot_token, slots);
  grow(ffn_.slot_weight, slots);
  grow(ffn_.slot_gate, slots * F);
  grow(ffn_.slot_up, slots * F);
  grow(ffn_.slot_out, slots * D);
  grow(ffn_.act_in, T * activation_row_bytes(kg, static_cast<int64_t>(D)));
  grow(ffn_.slot_act, slots * activation_row_bytes(kg, static_cast<int64_t>(D)));
  grow(ffn_.slot_down_act, slots * activation_row_bytes(kd, static_cast<int64_t>(F)));
  ffn_.active_experts.reserve(E);
}

template <class Fn>
void CpuBackend::for_rows(int64_t rows, int64_t row_elems, const Fn& fn) {
  constexpr int64_t kParallelElements = 1 << 15;
  if (rows < 2 || rows * row_elems < kParallelElements) {
    fn(int64_t{0}, rows);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, row_elems));
  ctx_.pool().parallel_for(rows, [&](int, int64_t begin, int64_t end) { fn(begin, end); }, grain);
}

void CpuBackend::embed(const Tensor& table, std::span<const int32_t> tokens, float* x) {
  cpu::embed(table, tokens, x);
}

void CpuBackend::rms_norm(const float* x, const std::vector<float>& w, int64_t rows, int64_t n, float eps,
                          float* out) {
  for_rows(rows, n, [&](int64_t r0, int64_t r1) { cpu::rms_norm(x + r0 * n, w.data(), r1 - r0, n, eps, out + r0 * n); });
}

void CpuBackend::add(float* x, const float* y, int64_t n) { cpu::add(x, y, n); }

void CpuBackend::attention(const AttentionWeights& w, const AttentionShape& shape, const float* a,
                           std::span<const AttentionSequence> seqs, float* out) {
  int64_t T = 0;
  for (const AttentionSequence& seq : seqs) {
    for (int64_t i = 0; i < seq.n_tokens; ++i) attn_.positions[static_cast<size_t>(T++)] = static_cast<int32_t>(seq.n_past + i);
  }
  const int64_t H = shape.n_head, d = shape.head_dim, q_dim = H * d, kv_dim = shape.n_head_kv * d;
  // q, k and v from one quantization of the input, in one parallel pass where they share
  // an activation type. A gated q projection holds [q_h | gate_h] per head: it goes to qg
  // and q is split out of it.
  auto bias = [](const std::vector<float>& b) { return b.empty() ? nullptr : b.data(); };
  const SharedInputMatmul qkv[] = {{&prepared(w.wq), w.gated ? attn_.qg.data() : attn_.q.data(), bias(w.bq)},
                                   {&prepared(w.wk), attn_.k.data(), bias(w.bk)},
                                   {&prepared(w.wv), attn_.v.data(), bias(w.bv)}};
  matmul_shared_input(ctx_, a, T, qkv);
  if (w.gated) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const float* src = attn_.qg.data() + (t * H + h) * 2 * d;
        std::copy_n(src, d, attn_.q.data() + (t * H + h) * d);
      }
    }
  }
  if (!w.q_norm.empty()) cpu::rms_norm(attn_.q.data(), w.q_norm.data(), T * H, d, shape.rms_eps, attn_.q.data());
  if (!w.k_norm.empty()) {
    cpu::rms_norm(attn_.k.data(), w.k_norm.data(), T * shape.n_head_kv, d, shape.rms_eps, attn_.k.data());
  }
  const std::span<const int32_t> pos(attn_.positions.data(), static_cast<size_t>(T));
  rope_neox(attn_.q.data(), T, H, d, shape.n_rot, pos, shape.rope_base);
  rope_neox(attn_.k.data(), T, shape.n_head_kv, d, shape.n_rot, pos, shape.rope_base);
  // Each sequence appends to its own cache (in the cache's type) and attends only to it.
  int64_t first = 0;
  for (const AttentionSequence& seq : seqs) {
    ctx_.reserve_context(seq.n_ctx, H / shape.n_head_kv);  // grows only; free when already there
    const int64_t n = seq.n_tokens;
    for (int64_t i = 0; i < n; ++i) {
      const size_t row = static_cast<size_t>(seq.n_past + i);
      quant::quantize_row(seq.k.type, attn_.k.data() + (first + i) * kv_dim, seq.k.data + row * seq.k.row_bytes, kv_dim);
      quant::quantize_row(seq.v.type, attn_.v.data() + (first + i) * kv_dim, seq.v.data + row * seq.v.row_bytes, kv_dim);
    }
    cpu::attention(ctx_, attn_.q.data() + first * q_dim, n, H, shape.n_head_kv, d, seq.k, seq.v,
                   pos.subspan(static_cast<size_t>(first), static_cast<size_t>(n)), attn_.out.data() + first * q_dim);
    first += n;
  }
  if (w.gated) {
    for_rows(T * H, d, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {  // r = t * H + h
        const float* gate = attn_.qg.data() + r * 2 * d + d;
        float* o = attn_.out.data() + r * d;
        for (int64_t i = 0; i < d; ++i) o[i] *= sigmoid(gate[i]);
      }
    });
  }
  matmul(ctx_, prepared(w.wo), attn_.out.data(), T, out);
}

void CpuBackend::delta_net(const DeltaNetWeights& w, const DeltaNetShape& shape, const float* a,
                           std::span<const DeltaNetSequence> seqs, float* out) {
  int64_t T = 0;
  for (const DeltaNetSequence& seq : seqs) T += seq.n_tokens;
  const int64_t nk = shape.n_k, nv = shape.n_v, dk = shape.d_k, dv = shape.d_v;
  const int64_t Ck = nk * dk, Cv = nv * dv, C = 2 * Ck + Cv, K = w.conv_kernel;
  auto& s = delta_;
  const SharedInputMatmul projections[] = {
      {&prepared(w.qkv), s.P.data()},     // P [T][C]
      {&prepared(w.gate), s.z.data()},    // z [T][C_v]
      {&prepared(w.beta), s.b.data()},    // [T][n_v]
      {&prepared(w.alpha), s.alpha.data()}  // [T][n_v]
  };
  matmul_shared_input(ctx_, a, T, projections);
  // Causal conv per sequence, each with its own carried state.
  int64_t first = 0;
  for (const DeltaNetSequence& seq : seqs) {
    conv1d_silu(ctx_, s.P.data() + first * C, seq.n_tokens, C, w.conv_taps.data(), K,
                seq.conv_in != nullptr ? seq.conv_in : seq.conv_state, seq.conv_state, s.conv.data() + first * C);
    first += seq.n_tokens;
  }
  // Split q | k | v, L2-normalise q and k per head, scale q; gates.
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for_rows(T, C, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* row = s.conv.data() + t * C;
      for (int64_t head = 0; head < nk; ++head) {
        for (int part = 0; part < 2; ++part) {
          const float* src = row + part * Ck + head * dk;
          float* dst = (part == 0 ? s.q.data() : s.k.data()) + t * Ck + head * dk;
          float sum = 0;
          for (int64_t i = 0; i < dk; ++i) sum += src[i] * src[i];
          const float scale = (part == 0 ? q_scale : 1.0f) / std::max(std::sqrt(sum), w.rms_eps);
          for (int64_t i = 0; i < dk; ++i) dst[i] = src[i] * scale;
        }
      }
      std::copy_n(row + 2 * Ck, Cv, s.v.data() + t * Cv);
      for (int64_t j = 0; j < nv; ++j) {
        const size_t at = static_cast<size_t>(t * nv + j);
        s.beta[at] = sigmoid(s.b[at]);
        s.g[at] = w.a[static_cast<size_t>(j)] * softplus(s.alpha[at] + w.dt_bias[static_cast<size_t>(j)]);
      }
    }
  });
  // The delta rule per sequence: chunked for prompts, token by token for decode.
  first = 0;
  for (const DeltaNetSequence& seq : seqs) {
    const int64_t n = seq.n_tokens;
    const float* ssm_in = seq.ssm_in != nullptr ? seq.ssm_in : seq.ssm_state;
    const float *q = s.q.data() + first * Ck, *k = s.k.data() + first * Ck, *v = s.v.data() + first * Cv,
                *g = s.g.data() + first * nv, *beta = s.beta.data() + first * nv;
    float* o = s.o.data() + first * Cv;
    if (n < 16) {
      delta_rule_recurrent(ctx_, shape, n, q, k, v, g, beta, ssm_in, seq.ssm_state, o, seq.ssm_first);
    } else if (seq.ssm_first == nullptr) {
      delta_rule_chunked(ctx_, shape, n, q, k, v, g, beta, ssm_in, seq.ssm_state, o);
    } else {  // a long verify pass: its first token alone, to have the state after it
      delta_rule_recurrent(ctx_, shape, 1, q, k, v, g, beta, ssm_in, seq.ssm_first, o);
      delta_rule_chunked(ctx_, shape, n - 1, q + Ck, k + Ck, v + Cv, g + nv, beta + nv, seq.ssm_first, seq.ssm_state,
                         o + Cv);
    }
    if (seq.record != nullptr) {  // a verify pass keeps its inputs for delta_net_rollback
      const DeltaNetRecord& r = *seq.record;
      std::copy_n(s.P.data() + first * C, n * C, r.P);
      std::copy_n(q, n * Ck, r.q);
      std::copy_n(k, n * Ck, r.k);
      std::copy_n(v, n * Cv, r.v);
      std::copy_n(g, n * nv, r.g);
      std::copy_n(beta, n * nv, r.beta);
    }
    first += n;
  }
  // Gated RMSNorm per value head, then the output projection.
  for_rows(T * nv, dv, [&](int64_t r0, int64_t r1) {
    cpu::rms_norm(s.o.data() + r0 * dv, w.norm.data(), r1 - r0, dv, w.rms_eps, s.y.data() + r0 * dv);
    for (int64_t i = r0 * dv; i < r1 * dv; ++i) {
      const float zi = s.z[static_cast<size_t>(i)];
      s.y[static_cast<size_t>(i)] *= zi / (1.0f + std::exp(-zi));
    }
  });
  matmul(ctx_, prepared(w.out), s.y.data(), T, out);
}

void CpuBackend::delta_net_rollback(const DeltaNetShape& shape, int64_t conv_kernel, const DeltaNetRollback& r) {
  const int64_t C = 2 * shape.n_k * shape.d_k + shape.n_v * shape.d_v;
  check_delta_net_rollback(r);
  conv_state_after(r.conv_in, r.record.P, r.keep, C, conv_kernel, r.conv_out);
  if (r.keep == 1) return;  // ssm_out is ssm_in, the state after the first position
  const int64_t Ck = shape.n_k * shape.d_k, Cv = shape.n_v * shape.d_v, nv = shape.n_v;
  const DeltaNetRecord& rec = r.record;
  delta_rule_recurrent(ctx_, shape, r.keep - 1, rec.q + Ck, rec.k + Ck, rec.v + Cv, rec.g + nv, rec.beta + nv,
                       r.ssm_in, r.ssm_out, nullptr);
}

void CpuBackend::swiglu_ffn(const Tensor& gate, const Tensor& up, const Tensor& down, const float* m, int64_t T,
                            float* out) {
  const SharedInputMatmul gate_up[] = {{&prepared(gate), ffn_.a.data()}, {&prepared(up), ffn_.b.data()}};
  matmul_shared_input(ctx_, m, T, gate_up);
  // In runs of 8 elements from the start: swiglu's SIMD and tail elements stay the ones
  // they are for the whole span.
  const int64_t n = T * gate.ne[1];
  for_rows((n + 7) / 8, 8, [&](int64_t r0, int64_t r1) {
    const int64_t at = 8 * r0;
    swiglu(ffn_.a.data() + at, ffn_.b.data() + at, std::min(n, 8 * r1) - at, ffn_.a.data() + at);
  });
  matmul(ctx_, prepared(down), ffn_.a.data(), T, out);
}

void CpuBackend::dense_ffn(const FfnWeights& w, const float* m, int64_t T, float* out) {
  swiglu_ffn(w.gate, w.up, w.down, m, T, out);
}

void CpuBackend::moe_route(const FfnWeights& w, const float* m, int64_t T, int32_t* chosen, float* weight) {
  const int64_t E = w.router.ne[1], k = w.n_expert_used;
  matmul(ctx_, prepared(w.router), m, T, ffn_.router_logits.data());
  for (int64_t t = 0; t < T; ++t) {
    route_top_k(ffn_.router_logits.data() + t * E, E, k, /*renormalize=*/true, chosen + t * k, weight + t * k);
  }
}

void CpuBackend::moe_experts(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen,
                             const float* weight, float* out) {
  std::fill(out, out + T * w.down_exps.ne[1], 0.0f);
  // Each expert runs once over all tokens routed to it; decode reads only chosen experts.
  const QuantDotKernel &kg = ctx_.kernel(w.gate_exps.type), &ku = ctx_.kernel(w.up_exps.type),
                       &kd = ctx_.kernel(w.down_exps.type);
  if (kg && ku && kd && kg.activation == ku.activation) {
    moe_grouped(w, m, T, chosen, weight, out);
  } else {
    moe_per_expert(w, m, T, chosen, weight, out);
  }
}

// The float path (F32/F16 experts, or float activations forced): one expert at a time.
void CpuBackend::moe_per_expert(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen,
                                const float* weight, float* out) {
  const int64_t E = w.router.ne[1], k = w.n_expert_used, D = w.down_exps.ne[1];
  auto& s = ffn_;
  for (int64_t e = 0; e < E; ++e) {
    s.expert_tokens.clear();
    s.expert_weights.clear();
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < k; ++j) {
        if (chosen[t * k + j] == e) {
          s.expert_tokens.push_back(static_cast<int32_t>(t));
          s.expert_weights.push_back(weight[t * k + j]);
        }
      }
    }
    const auto n = static_cast<int64_t>(s.expert_tokens.size());
    if (n == 0) continue;
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(m + s.expert_tokens[static_cast<size_t>(i)] * D, D, s.expert_in.data() + i * D);
    }
    swiglu_ffn(w.gate_exps.matrix(e), w.up_exps.matrix(e), w.down_exps.matrix(e), s.expert_in.data(), n,
               s.expert_out.data());
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
void CpuBackend::moe_grouped(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen,
                             const float* weight, float* out) {
  const int64_t E = w.router.ne[1], k = w.n_expert_used, F = w.gate_exps.ne[1], D = w.down_exps.ne[1];
  auto& s = ffn_;
  // Counting sort of the T*k (token, expert) slots by expert.
  std::fill(s.expert_first.begin(), s.expert_first.begin() + E + 1, 0);
  for (int64_t i = 0; i < T * k; ++i) ++s.expert_first[static_cast<size_t>(chosen[i]) + 1];
  for (int64_t e = 0; e < E; ++e) s.expert_first[static_cast<size_t>(e + 1)] += s.expert_first[static_cast<size_t>(e)];
  s.expert_tokens.assign(s.expert_first.begin(), s.expert_first.begin() + E);  // next free slot per expert
  for (int64_t i = 0; i < T * k; ++i) {
    const auto slot = static_cast<size_t>(s.expert_tokens[static_cast<size_t>(chosen[i])]++);
    s.slot_token[slot] = static_cast<int32_t>(i / k);
    s.slot_weight[slot] = weight[i];
  }
  // Copies: each expert's call has its own few tokens, but the pass's size says whether
  // they stream (kernel_for_pass).
  const QuantDotKernel kg = kernel_for_pass(ctx_.kernel(w.gate_exps.type), T),
                       ku = kernel_for_pass(ctx_.kernel(w.up_exps.type), T),
                       kd = kernel_for_pass(ctx_.kernel(w.down_exps.type), T);
  const size_t in_row = activation_row_bytes(kg, D), down_row = activation_row_bytes(kd, F);
  const Tensor &gate_exps = prepared(w.gate_exps), &up_exps = prepared(w.up_exps), &down_exps = prepared(w.down_exps);
  quantize_activations(ctx_, w.gate_exps.type, m, T, D, s.act_in.data());
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
  ctx_.pool().parallel_for(
      static_cast<int64_t>(s.active_experts.size()),
      [&](int, int64_t begin, int64_t end) {
        for (int64_t j = begin; j < end; ++j) {
          const int32_t e = s.active_experts[static_cast<size_t>(j)];
          const int64_t first = s.expert_first[static_cast<size_t>(e)], n = n_slots(e);
          float* gate = s.slot_gate.data() + first * F;
          float* up = s.slot_up.data() + first * F;
          const uint8_t* act = s.slot_act.data() + static_cast<size_t>(first) * in_row;
          matmul_serial(kg, {gate_exps.matrix(e), act, n, gate});
          matmul_serial(ku, {up_exps.matrix(e), act, n, up});
          swiglu(gate, up, n * F, gate);
          uint8_t* down_act = s.slot_down_act.data() + static_cast<size_t>(first) * down_row;
          for (int64_t i = 0; i < n; ++i) kd.quantize(gate + i * F, down_act + static_cast<size_t>(i) * down_row, F);
          matmul_serial(kd, {down_exps.matrix(e), down_act, n, s.slot_out.data() + first * D});
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

void CpuBackend::shared_expert(const FfnWeights& w, const float* m, int64_t T, float* out) {
  const int64_t D = w.down_shexp.ne[1];
  swiglu_ffn(w.gate_shexp, w.up_shexp, w.down_shexp, m, T, ffn_.expert_out.data());
  for (int64_t t = 0; t < T; ++t) {
    float logit = 0;
    for (int64_t c = 0; c < D; ++c) logit += w.shexp_gate[static_cast<size_t>(c)] * m[t * D + c];
    const float gate = sigmoid(logit);
    for (int64_t c = 0; c < D; ++c) out[t * D + c] += gate * ffn_.expert_out[static_cast<size_t>(t * D + c)];
  }
}

void CpuBackend::linear(const Tensor& w, const float* x, int64_t rows, float* out) {
  matmul(ctx_, prepared(w), x, rows, out);
}

void CpuBackend::logits(const std::vector<float>& norm, float eps, const Tensor& head, const float* x, int64_t rows,
                        int64_t D, float* scratch, float* logits) {
  cpu::rms_norm(x, norm.data(), rows, D, eps, scratch);
  matmul(ctx_, prepared(head), scratch, rows, logits);
}

namespace {

// Rows [first, end) of w as a matrix of their own: a group of an interleaved copy is the
// bytes of its 8 rows, so whole groups are a byte range in either layout.
Tensor row_view(const Tensor& w, int64_t first, int64_t end) {
  Tensor v = w;
  v.ne = {w.ne[0], end - first, 1, 1};
  v.n_dims = 2;
  v.data = w.data + static_cast<uint64_t>(first) * w.row_bytes();
  return v;
}

}  // namespace

void CpuBackend::logits_subset(const std::vector<float>& norm, float eps, const Tensor& head, const float* x,
                               int64_t rows, int64_t D, float* scratch, float* logits,
                               std::span<const RowRange> subset) {
  check_head_subset(head, subset);
  cpu::rms_norm(x, norm.data(), rows, D, eps, scratch);
  const Tensor& w = prepared(head);
  const int64_t V = w.rows();
  const QuantDotKernel& kernel = ctx_.kernel(w.type);
  // A matmul's output rows are [tokens][its rows], so each token goes on its own: a draft
  // model asks for one row at a time.
  for (int64_t t = 0; t < rows; ++t) {
    const float* h = scratch + t * D;
    float* y = logits + t * V;
    fill_outside_subset(subset, V, y);
    if (!kernel) {  // float path: each run a matmul of its own
      for (const RowRange& r : subset) matmul(ctx_, row_view(w, r.begin, r.end), h, 1, y + r.begin);
      continue;
    }
    // The quantization and kernels are matmul()'s, so the rows come out bit-identical.
    uint8_t* act = ctx_.activation_buffer(activation_row_bytes(kernel, D));
    quantize_activations(ctx_, w.type, h, 1, D, act);
    head_runs_.clear();
    for (const RowRange& r : subset) head_runs_.push_back({row_view(w, r.begin, r.end), act, 1, y + r.begin});
    matmul_grouped(ctx_, head_runs_);
  }
}

}  // namespace tandem::cpu
