#include "model/blocks.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/error.h"
#include "quant/quantize.h"

namespace tandem::model {

void KvSequence::allocate_kv(const Backends& be, std::span<const Device> slot_devices, int64_t context,
                             int64_t n_head_kv, int64_t head_dim, KvCacheTypes kv) {
  check_kv_cache_types(kv, head_dim);
  n_ctx = context;
  types = kv;
  const auto row_bytes = [&](DType t) {
    const DTypeInfo& info = dtype_info(t);
    return static_cast<size_t>(n_head_kv * head_dim / info.block_elems) * info.block_bytes;
  };
  k_row_bytes = row_bytes(kv.k);
  v_row_bytes = row_bytes(kv.v);
  k_cache.clear();
  v_cache.clear();
  for (const Device d : slot_devices) {
    k_cache.push_back(be.on(d).allocate(static_cast<size_t>(context) * k_row_bytes));
    v_cache.push_back(be.on(d).allocate(static_cast<size_t>(context) * v_row_bytes));
  }
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

Backend& Backends::on(Device d) const {
  Backend* b = d == Device::Cpu ? cpu : gpu;
  if (b == nullptr) fail("the placement puts work on the {}, but no {} backend is running", d == Device::Cpu ? "CPU" : "GPU",
                         d == Device::Cpu ? "CPU" : "GPU");
  return *b;
}

void attention_sequences(std::span<const SequenceInput> batch, int64_t slot, std::vector<AttentionSequence>& out) {
  out.clear();
  for (const SequenceInput& in : batch) {
    auto& seq = static_cast<KvSequence&>(*in.state);
    const auto s = static_cast<size_t>(slot);
    out.push_back({{seq.k_cache[s].as(), seq.types.k, seq.k_row_bytes},
                   {seq.v_cache[s].as(), seq.types.v, seq.v_row_bytes},
                   seq.n_ctx,
                   seq.n_past,
                   static_cast<int64_t>(in.tokens.size())});
  }
}

void allocate_workspace(const Backends& be, const std::vector<LayerPlacement>& placement, Device output,
                        int64_t max_tokens, int64_t n_embd, int64_t n_expert_used, const ExpertStreamingPlan& streaming,
                        LayerWorkspace& ws) {
  ws.max_tokens = max_tokens;
  if (streaming.policy != nullptr && be.gpu != nullptr && be.gpu->can_stream_experts()) {
    be.gpu->reserve_expert_streaming(streaming.device_bytes);
    ws.streaming = streaming.policy;
  } else {
    ws.streaming = std::make_shared<ExpertStreaming>();  // off
  }
  const auto TD = static_cast<size_t>(max_tokens * n_embd) * sizeof(float);
  const auto Tk = static_cast<size_t>(max_tokens * n_expert_used);
  std::array<bool, 2> used{true, output == Device::Cuda};
  bool hybrid = false;  // some layer's routed experts run on another device than the layer
  for (const LayerPlacement& at : placement) {
    used[static_cast<size_t>(at.main)] = used[static_cast<size_t>(at.experts)] = true;
    hybrid = hybrid || at.experts != at.main;
  }
  for (const Device d : {Device::Cpu, Device::Cuda}) {
    if (!used[static_cast<size_t>(d)]) continue;
    // The CPU's buffers are what crosses to and from the GPU: the GPU backend makes them
    // (page-locked) when both devices are in use.
    const bool crossing = d == Device::Cpu && used[1];
    Backend& b = crossing ? be.on(Device::Cuda) : be.on(d);
    auto make = [&](size_t bytes) { return crossing ? b.allocate_host(bytes) : b.allocate(bytes); };
    DeviceActivations& act = ws.on(d);
    act.x = make(TD);
    act.a = make(TD);
    act.proj = make(TD);
    act.chosen = make(Tk * sizeof(int32_t));
    act.weight = make(Tk * sizeof(float));
    if (hybrid) {
      act.expert_in = make(TD);
      act.expert_out = make(TD);
    }
  }
  ws.tokens.resize(static_cast<size_t>(max_tokens));
  ws.seqs.reserve(static_cast<size_t>(max_tokens));
  ws.delta_seqs.reserve(static_cast<size_t>(max_tokens));
}

void transfer(const Backends& be, Device from, const void* src, Device to, void* dst, size_t bytes,
              LayerWorkspace& ws, bool queued) {
  if (from == to && src == dst) return;
  Backend &f = be.on(from), &t = be.on(to);
  if (f.device() == Device::Cpu) {
    t.copy_from_host(dst, src, bytes);
  } else if (t.device() == Device::Cpu) {
    if (queued) {
      f.copy_to_host_queued(dst, src, bytes);
    } else {
      f.copy_to_host(dst, src, bytes);
    }
  } else {
    fail("transfer: neither side of a copy is host memory (tandem has one GPU and the CPU)");
  }
}

Backend& enter(const Backends& be, LayerWorkspace& ws, Device d, int64_t T, int64_t D) {
  if (ws.residual_on != d) {
    transfer(be, ws.residual_on, ws.on(ws.residual_on).x.as(), d, ws.on(d).x.as(),
             static_cast<size_t>(T * D) * sizeof(float), ws);
    ws.residual_on = d;
  }
  return be.on(d);
}

void ffn_block(const Backends& be, LayerWorkspace& ws, const FfnWeights& w, LayerPlacement at, int64_t T, int64_t D) {
  Backend& main = be.on(at.main);
  DeviceActivations& m = ws.on(at.main);
  const float* in = m.a.as<float>();
  float* out = m.proj.as<float>();
  if (!w.is_moe()) {
    main.dense_ffn(w, in, T, out);
    return;
  }
  int32_t* chosen = m.chosen.as<int32_t>();
  float* weight = m.weight.as<float>();
  main.moe_route(w, in, T, chosen, weight);
  if (at.experts == at.main) {
    main.moe_experts(w, in, T, chosen, weight, out);
    if (w.gate_shexp.valid()) main.shared_expert(w, in, T, out);
    return;
  }
  Backend& experts = be.on(at.experts);
  const auto seconds_since = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const double macs_per_token =
      static_cast<double>(w.n_expert_used) * static_cast<double>(w.gate_exps.ne[0] * w.gate_exps.ne[1] * 3);
  // A prompt micro-batch whose experts live on the CPU: streamed or not, its time is measured.
  const bool cpu_prompt_experts = at.experts == Device::Cpu && T > ExpertStreaming::kMaxDecodeTokens;
  if (cpu_prompt_experts) {
    const double bytes = static_cast<double>(w.gate_exps.row_bytes() * w.gate_exps.rows() +
                                             w.up_exps.row_bytes() * w.up_exps.rows() +
                                             w.down_exps.row_bytes() * w.down_exps.rows());
    if (ws.streaming->stream(T, bytes, macs_per_token)) {
      // Streamed: the weights come here; the layer never leaves the main device. Timed
      // from the router's choices to the experts' sums (finish: neither the attention
      // queued before nor anything after counts), as the CPU path is.
      main.finish();
      const auto t0 = std::chrono::steady_clock::now();
      main.moe_experts_streamed(w, experts, in, T, chosen, weight, out);
      main.finish();
      ws.streaming->measured_stream(bytes, seconds_since(t0));
      if (w.gate_shexp.valid()) main.shared_expert(w, in, T, out);
      return;
    }
  }
  // Hybrid: the experts' device gets the input and the choices; the main device computes
  // the shared expert into proj while the experts run there (on a GPU the shared expert is
  // queued before the experts' work starts), then adds their sum.
  DeviceActivations& e = ws.on(at.experts);
  const size_t TD = static_cast<size_t>(T * D) * sizeof(float), Tk = static_cast<size_t>(T * w.n_expert_used);
  // The choices and weights queue; the input's copy then waits once for all three.
  transfer(be, at.main, chosen, at.experts, e.chosen.as(), Tk * sizeof(int32_t), ws, /*queued=*/true);
  transfer(be, at.main, weight, at.experts, e.weight.as(), Tk * sizeof(float), ws, /*queued=*/true);
  transfer(be, at.main, in, at.experts, e.expert_in.as(), TD, ws);
  main.zero(out, TD);
  if (w.gate_shexp.valid()) main.shared_expert(w, in, T, out);
  main.flush();  // the shared expert runs now, alongside the experts
  const auto t0 = std::chrono::steady_clock::now();
  experts.moe_experts(w, e.expert_in.as<float>(), T, e.chosen.as<int32_t>(), e.weight.as<float>(), e.expert_out.as<float>());
  if (cpu_prompt_experts) {
    ws.streaming->measured_cpu(static_cast<double>(T) * macs_per_token, seconds_since(t0));
  }
  float* routed = m.expert_out.as<float>();
  transfer(be, at.experts, e.expert_out.as(), at.main, routed, TD, ws);
  main.add(out, routed, T * D);
}

void embed_batch(const Backends& be, LayerWorkspace& ws, const Tensor& token_embd,
                 std::span<const SequenceInput> batch) {
  size_t at = 0;
  for (const SequenceInput& in : batch) {
    for (int32_t token : in.tokens) ws.tokens[at++] = token;
  }
  for (Backend* b : {be.cpu, be.gpu}) {
    if (b != nullptr) b->begin_pass(static_cast<int64_t>(at));
  }
  be.on(Device::Cpu).embed(token_embd, std::span<const int32_t>(ws.tokens.data(), at), ws.on(Device::Cpu).x.as<float>());
  ws.residual_on = Device::Cpu;
}

void finish_batch(const Backends& be, LayerWorkspace& ws, std::span<const SequenceInput> batch, int64_t D,
                  const std::vector<float>& output_norm, float rms_eps, const Tensor& output, Device output_device) {
  int64_t T = 0;
  for (const SequenceInput& in : batch) T += static_cast<int64_t>(in.tokens.size());
  Backend& b = enter(be, ws, output_device, T, D);
  const float* x = ws.on(output_device).x.as<float>();
  float* scratch = ws.on(output_device).a.as<float>();
  int64_t first = 0;
  for (const SequenceInput& in : batch) {
    const auto n = static_cast<int64_t>(in.tokens.size());
    if (n == 0) continue;
    const int64_t from = in.all_logits ? first : first + n - 1, rows = first + n - from;
    if (in.hidden != nullptr) {
      // Every position's normed state, for an MTP drafter (before logits reuses the scratch).
      b.rms_norm(x + first * D, output_norm, n, D, rms_eps, scratch);
      b.copy_to_host(in.hidden, scratch, static_cast<size_t>(n * D) * sizeof(float));
    }
    if (in.head_rows.empty()) {
      b.logits(output_norm, rms_eps, output, x + from * D, rows, D, scratch, in.logits);
    } else {
      b.logits_subset(output_norm, rms_eps, output, x + from * D, rows, D, scratch, in.logits, in.head_rows);
    }
    first += n;
  }
  for (const SequenceInput& in : batch) {
    in.state->n_past += static_cast<int64_t>(in.tokens.size());
    in.state->verify_tokens = in.verify ? static_cast<int64_t>(in.tokens.size()) : 0;
  }
}

}  // namespace tandem::model
