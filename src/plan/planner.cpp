#include "plan/planner.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <tuple>

#include "core/error.h"

namespace tandem::plan {
namespace {

// llama.cpp's --cpu-moe / --n-cpu-moe name the routed expert tensors by this pattern (the
// optional "ch" and "gate_up" cover fused variants other architectures use).
constexpr std::string_view kExpertsPattern = R"(\.ffn_(up|down|gate|gate_up)_(ch|)exps)";

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::regex compile(const std::string& pattern, std::string_view where) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail("{}: bad regular expression '{}': {}", where, pattern, e.what());
  }
}

bool mtp_expert(const TensorSpec& t) { return t.role == Role::kMtp && t.name.find("_exps") != std::string::npos; }

// Bytes of a tensor decode reads per token. The MTP block, when it runs, is counted once per
// generated token (about one draft per token at high acceptance; more drafts per verify step
// read it more often, fewer accepted ones less).
double tensor_bytes_per_token(const TensorSpec& t, const model::HParams& hp, bool mtp) {
  const double experts_share = hp.n_expert > 0 ? static_cast<double>(hp.n_expert_used) / hp.n_expert : 1.0;
  switch (t.role) {
    case Role::kRoutedExperts: return static_cast<double>(t.bytes) * experts_share;
    case Role::kTokenEmbedding: return static_cast<double>(t.bytes) / static_cast<double>(t.dims.size() > 1 ? t.dims[1] : 1);
    case Role::kMtp:
      if (!mtp) return 0;
      return static_cast<double>(t.bytes) * (mtp_expert(t) ? experts_share : 1.0);
    default: return static_cast<double>(t.bytes);
  }
}

// Things placed together: tensors (indices into spec.tensors) and buffers (into plan.buffers).
struct Group {
  std::vector<size_t> tensors, buffers;
};

class Placer {
 public:
  Placer(const ModelSpec& spec, const PlanOptions& o) : spec_(spec), o_(o) {}

  Plan run() {
    check_options();
    const size_t n = spec_.tensors.size();
    plan_.tensor_device.assign(n, Device::Cpu);
    plan_.overridden.assign(n, false);
    decided_.assign(n, false);
    apply_rules();
    // The MTP block's input part runs on the CPU beside the token embedding (the model's
    // mtp_forward); a rule that named it is honoured and execution_placement reports it.
    for (size_t i = 0; i < n; ++i) {
      if (!decided_[i] && spec_.tensors[i].role == Role::kMtp && mtp_input_part(spec_.tensors[i].name)) {
        decided_[i] = true;
      }
    }
    add_layer_buffers();
    plan_.mtp = o_.mtp;

    plan_.vram_budget = o_.vram_budget;
    plan_.vram_reserve = vram_reserve(o_.vram_budget);
    plan_.vram_usable = o_.vram_budget > plan_.vram_reserve ? o_.vram_budget - plan_.vram_reserve : 0;
    plan_.ram_budget = o_.ram_budget;
    plan_.n_ctx = o_.n_ctx;
    gpu_scratch_ = compute_scratch_bytes(spec_.hp, o_.n_ubatch);
    const uint64_t fixed = fixed_gpu_bytes();
    // The GPU's scratch is needed as soon as anything runs there.
    const uint64_t claimed = fixed + gpu_scratch_;
    room_ = plan_.vram_usable > claimed ? plan_.vram_usable - claimed : 0;

    if (o_.n_gpu_layers) {
      place_slots_ngl();
    } else if (o_.policy == Policy::kLayers) {
      place_slots_prefix();
    } else {
      place_auto();
    }
    finish();
    return std::move(plan_);
  }

 private:
  void check_options() const {
    if (o_.n_ctx <= 0) fail("context size (-c) must be positive, got {}", o_.n_ctx);
    if (o_.n_ubatch <= 0) fail("micro-batch size must be positive, got {}", o_.n_ubatch);
    if (o_.n_gpu_layers && *o_.n_gpu_layers < 0) fail("-ngl must be >= 0 (99: all layers), got {}", *o_.n_gpu_layers);
    if (o_.n_cpu_moe && *o_.n_cpu_moe < 0) fail("--n-cpu-moe must be >= 0, got {}", *o_.n_cpu_moe);
    if (o_.n_gpu_layers && o_.policy == Policy::kLayers) {
      fail("-ngl and --placement layers both choose the layers on the GPU; give one of them");
    }
  }

  // -ot rules, then --cpu-moe, then --n-cpu-moe, first match wins (llama.cpp's order when
  // the flags are given in that order).
  void apply_rules() {
    std::vector<std::pair<std::regex, Device>> rules;
    std::string described;
    for (const TensorOverride& r : o_.overrides) {
      rules.emplace_back(r.regex, r.device);
      described += fmt::format(" -ot {}={}", r.pattern, device_name(r.device));
    }
    if (o_.cpu_moe) {
      rules.emplace_back(compile(std::string(kExpertsPattern), "--cpu-moe"), Device::Cpu);
      described += " --cpu-moe";
    }
    if (o_.n_cpu_moe) {
      for (int64_t i = 0; i < *o_.n_cpu_moe; ++i) {
        rules.emplace_back(compile(fmt::format(R"(blk\.{}{})", i, kExpertsPattern), "--n-cpu-moe"), Device::Cpu);
      }
      described += fmt::format(" --n-cpu-moe {}", *o_.n_cpu_moe);
    }
    plan_.policy = o_.n_gpu_layers ? fmt::format("-ngl {}", *o_.n_gpu_layers)
                                   : o_.policy == Policy::kLayers ? "layers" : "auto";
    plan_.policy += described;
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      for (const auto& [regex, device] : rules) {
        if (std::regex_search(spec_.tensors[i].name, regex)) {
          plan_.tensor_device[i] = device;
          plan_.overridden[i] = decided_[i] = true;
          break;
        }
      }
    }
  }

  // KV cache / recurrent state of each trunk layer. They live where the layer's attention
  // (or DeltaNet) runs: if a rule placed those weights, the buffer follows the largest.
  void add_layer_buffers() {
    for (int64_t l = 0; l < spec_.n_blocks(); ++l) {
      const LayerBuffers lb = layer_buffers(spec_.hp, l, o_.n_ctx, o_.kv, o_.mtp);
      for (const auto& [kind, bytes] : {std::pair{BufferKind::kKvCache, lb.kv}, std::pair{BufferKind::kState, lb.state}}) {
        if (bytes == 0) continue;
        Buffer b{kind, l, bytes, Device::Cpu};
        bool fixed = false;
        uint64_t largest = 0;
        for (size_t i = 0; i < spec_.tensors.size(); ++i) {
          const TensorSpec& t = spec_.tensors[i];
          const bool holds_cache = t.role == Role::kAttention || t.role == Role::kDeltaNet ||
                                   (t.role == Role::kMtp && !mtp_expert(t) && !mtp_input_part(t.name));
          if (t.layer == l && plan_.overridden[i] && holds_cache &&
              t.bytes >= largest) {
            largest = t.bytes, b.device = plan_.tensor_device[i], fixed = true;
          }
        }
        plan_.buffers.push_back(b);
        buffer_decided_.push_back(fixed);
      }
    }
  }

  uint64_t fixed_gpu_bytes() const {
    uint64_t total = 0;
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      if (decided_[i] && plan_.tensor_device[i] == Device::Cuda) total += spec_.tensors[i].bytes;
    }
    for (size_t i = 0; i < plan_.buffers.size(); ++i) {
      if (buffer_decided_[i] && plan_.buffers[i].device == Device::Cuda) total += plan_.buffers[i].bytes;
    }
    return total;
  }

  // The undecided tensors (and buffers of `layer`) that `pick` selects.
  template <typename Pick>
  Group group(int64_t layer, Pick pick) const {
    Group g;
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      if (!decided_[i] && pick(spec_.tensors[i])) g.tensors.push_back(i);
    }
    for (size_t i = 0; i < plan_.buffers.size(); ++i) {
      if (!buffer_decided_[i] && layer >= 0 && plan_.buffers[i].layer == layer) g.buffers.push_back(i);
    }
    return g;
  }

  uint64_t bytes(const Group& g) const {
    uint64_t total = 0;
    for (size_t i : g.tensors) total += spec_.tensors[i].bytes;
    for (size_t i : g.buffers) total += plan_.buffers[i].bytes;
    return total;
  }

  void assign(const Group& g, Device device) {
    for (size_t i : g.tensors) plan_.tensor_device[i] = device, decided_[i] = true;
    for (size_t i : g.buffers) plan_.buffers[i].device = device, buffer_decided_[i] = true;
  }

  // Puts the whole group on the GPU if it fits in what is left of the budget.
  bool try_gpu(const Group& g) {
    const uint64_t b = bytes(g);
    if (b > room_) return false;
    room_ -= b;
    assign(g, Device::Cuda);
    return true;
  }

  // Slot s < n_blocks is block s (its tensors and buffers); the last slot is the output head
  // and norm. The token embedding is in no slot: it stays on the CPU, as llama.cpp's input layer.
  Group slot(int64_t s) const {
    if (s < spec_.n_blocks()) return group(s, [s](const TensorSpec& t) { return t.layer == s; });
    return group(-1, [](const TensorSpec& t) { return t.layer < 0 && t.role != Role::kTokenEmbedding; });
  }
  int64_t n_slots() const { return spec_.n_blocks() + 1; }

  // -ngl N: the last N slots, as llama.cpp counts them (the output head is the last slot,
  // so -ngl 1 offloads only the head and -ngl n_blocks+1 everything). The budget is checked
  // afterwards, in finish().
  void place_slots_ngl() {
    const int64_t first_gpu = std::max<int64_t>(n_slots() - *o_.n_gpu_layers, 0);
    for (int64_t s = 0; s < n_slots(); ++s) assign(slot(s), s >= first_gpu ? Device::Cuda : Device::Cpu);
  }

  // --placement layers: whole slots from the first while they fit (a contiguous prefix).
  void place_slots_prefix() {
    for (int64_t s = 0; s < n_slots(); ++s) {
      if (!try_gpu(slot(s))) break;
    }
  }

  void place_auto() {
    const model::HParams& hp = spec_.hp;
    // 1. Every-token weights with their layer's KV cache / state, layer by layer, then the
    //    output head and norm: every byte of these is read for every token.
    for (int64_t l = 0; l < hp.n_layer; ++l) {
      try_gpu(group(l, [l](const TensorSpec& t) { return t.layer == l && every_token(t.role); }));
    }
    try_gpu(slot(spec_.n_blocks()));
    // 1b. With MTP speculation, the MTP block (experts and KV cache included): each draft
    //     runs it alone, token after token, so a part of it left on the CPU is paid per draft.
    if (o_.mtp) place_mtp_blocks();
    // --expert-streaming on: room to stream the CPU's experts to the GPU in long prompts
    // (two slabs, at most 64 MiB), if not every layer's experts will fit, set aside before
    // the experts (auto takes only what the experts leave).
    uint64_t undecided_experts = 0;
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      if (!decided_[i] && spec_.tensors[i].role == Role::kRoutedExperts) undecided_experts += spec_.tensors[i].bytes;
    }
    if (o_.expert_streaming == model::ExpertStreaming::Mode::kOn && undecided_experts > room_) {
      const uint64_t stream = expert_stream_need(/*only_streamed=*/false).want;
      if (stream <= room_) room_ -= stream;
    }
    // 2. Routed experts, a whole layer at a time, LAST layer first. Every layer's experts are
    //    worth the same per byte (a token reads n_expert_used of n_expert in each), so the
    //    order only decides which layers; taking them from the end makes the default's
    //    contiguous part the placement of llama.cpp's hand-tuned `-ngl 99 --n-cpu-moe K`
    //    (which keeps the FIRST K layers' experts on the CPU) for the largest K that fits,
    //    so the two compare directly. A layer too large for what is left (Q4_K_M gives some
    //    layers Q6_K down projections) is skipped and smaller ones below it still get their
    //    chance, so the default holds at least as many expert bytes as the best K.
    for (int64_t l = hp.n_layer - 1; l >= 0; --l) {
      try_gpu(group(l, [l](const TensorSpec& t) { return t.layer == l && t.role == Role::kRoutedExperts; }));
    }
    // 3. Without MTP speculation the MTP blocks are never run: only if room is left.
    if (!o_.mtp) place_mtp_blocks();
    // The token embedding and whatever did not fit stay on the CPU (finish()).
  }

  void place_mtp_blocks() {
    for (int64_t b = spec_.hp.n_layer; b < spec_.n_blocks(); ++b) {
      try_gpu(group(b, [b](const TensorSpec& t) { return t.layer == b; }));
    }
  }

  void finish() {
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      (plan_.tensor_device[i] == Device::Cuda ? plan_.gpu : plan_.cpu).weights += spec_.tensors[i].bytes;
    }
    for (const Buffer& b : plan_.buffers) {
      DeviceTotals& d = b.device == Device::Cuda ? plan_.gpu : plan_.cpu;
      (b.kind == BufferKind::kKvCache ? d.kv : d.state) += b.bytes;
    }
    // Each device that runs anything needs scratch; the CPU always does (embedding lookup).
    if (plan_.gpu.total() > 0) {
      plan_.buffers.push_back({BufferKind::kScratch, -1, gpu_scratch_, Device::Cuda});
      plan_.gpu.scratch = gpu_scratch_;
    }
    plan_.buffers.push_back({BufferKind::kScratch, -1, gpu_scratch_, Device::Cpu});
    plan_.cpu.scratch = gpu_scratch_;
    add_expert_stream_buffer();

    if (plan_.gpu.total() > plan_.vram_usable) {
      fail("placement '{}' needs {} of VRAM but the budget allows {} ({} minus the {} reserve): {} over budget; "
           "put fewer layers or tensors on the GPU (-ngl, -ot, --n-cpu-moe) or use the default placement",
           plan_.policy, format_size(plan_.gpu.total()), format_size(plan_.vram_usable),
           format_size(plan_.vram_budget), format_size(plan_.vram_reserve),
           format_size(plan_.gpu.total() - plan_.vram_usable));
    }
    if (plan_.cpu.total() > plan_.ram_budget) {
      const uint64_t gpu_left = plan_.vram_usable - plan_.gpu.total();
      fail("{} does not fit: placement '{}' leaves {} for RAM (weights {}, KV cache {}, state {}, scratch {}) "
           "but {} is available: {} missing; the GPU holds {} of its {} usable VRAM{}",
           spec_.name, plan_.policy, format_size(plan_.cpu.total()), format_size(plan_.cpu.weights),
           format_size(plan_.cpu.kv), format_size(plan_.cpu.state), format_size(plan_.cpu.scratch),
           format_size(plan_.ram_budget), format_size(plan_.cpu.total() - plan_.ram_budget),
           format_size(plan_.gpu.total()), format_size(plan_.vram_usable),
           gpu_left > (uint64_t{64} << 20) && plan_.policy != "auto"
               ? fmt::format(" ({} unused: the default placement would use it)", format_size(gpu_left))
               : "");
    }
  }

  // The GPU buffer expert streaming wants (backend.h: two full slabs of the largest expert
  // stack) and the least it can work with (two of its largest single experts), over the
  // layers whose experts stay on the CPU while the rest of the layer is on the GPU, or
  // (only_streamed = false) over every layer with routed experts.
  struct StreamNeed {
    uint64_t want = 0, least = 0;
  };
  StreamNeed expert_stream_need(bool only_streamed) const {
    std::vector<bool> main_on_gpu(static_cast<size_t>(spec_.hp.n_layer), false);
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      const TensorSpec& t = spec_.tensors[i];
      if (t.layer >= 0 && t.layer < spec_.hp.n_layer && t.role != Role::kRoutedExperts &&
          plan_.tensor_device[i] == Device::Cuda) {
        main_on_gpu[static_cast<size_t>(t.layer)] = true;
      }
    }
    StreamNeed need;
    for (size_t i = 0; i < spec_.tensors.size(); ++i) {
      const TensorSpec& t = spec_.tensors[i];
      if (t.role != Role::kRoutedExperts || t.layer < 0 || t.layer >= spec_.hp.n_layer || t.dims.size() < 3) continue;
      if (only_streamed && (plan_.tensor_device[i] != Device::Cpu || !main_on_gpu[static_cast<size_t>(t.layer)])) continue;
      const int64_t n_expert = t.dims[2];
      const uint64_t expert = t.bytes / static_cast<uint64_t>(n_expert);
      need.want = std::max(need.want, expert_stream_bytes(expert, n_expert));
      need.least = std::max(need.least, expert_stream_least_bytes(expert));
    }
    return need;
  }

  // The streaming buffer, when a GPU layer's experts ended on the CPU: what it wants if room
  // was set aside (--expert-streaming on with the auto policy), else what the placement left
  // unused, up to what it wants, if that holds two experts (never a failure: no buffer).
  void add_expert_stream_buffer() {
    if (o_.expert_streaming == model::ExpertStreaming::Mode::kOff || plan_.gpu.total() == 0) return;
    const StreamNeed need = expert_stream_need(/*only_streamed=*/true);
    if (need.want == 0) return;
    const uint64_t room = plan_.vram_usable > plan_.gpu.total() ? plan_.vram_usable - plan_.gpu.total() : 0;
    const uint64_t bytes = std::min(need.want, room) / 256 * 256;
    if (bytes < need.least) return;
    plan_.buffers.push_back({BufferKind::kExpertStream, -1, bytes, Device::Cuda});
    plan_.gpu.scratch += bytes;
    plan_.expert_stream_bytes = bytes;
  }

  const ModelSpec& spec_;
  const PlanOptions& o_;
  Plan plan_;
  std::vector<bool> decided_, buffer_decided_;
  uint64_t gpu_scratch_ = 0;
  uint64_t room_ = 0;  // GPU bytes still free for the policy
};

}  // namespace

std::string_view device_name(Device device) { return device == Device::Cuda ? "CUDA0" : "CPU"; }

std::string_view buffer_name(BufferKind kind) {
  switch (kind) {
    case BufferKind::kKvCache: return "kv cache";
    case BufferKind::kState: return "deltanet state";
    case BufferKind::kScratch: return "compute scratch";
    case BufferKind::kExpertStream: return "expert streaming";
  }
  return "?";
}

std::vector<TensorOverride> parse_tensor_overrides(std::string_view arg) {
  std::vector<TensorOverride> out;
  size_t start = 0;
  while (start <= arg.size()) {
    const size_t comma = std::min(arg.find(',', start), arg.size());
    const std::string rule(arg.substr(start, comma - start));
    start = comma + 1;
    const size_t eq = rule.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == rule.size()) {
      fail("-ot '{}': expected REGEX=DEVICE (DEVICE is CPU or CUDA0)", rule);
    }
    const std::string pattern = rule.substr(0, eq), device = lower(rule.substr(eq + 1));
    Device d = Device::Cpu;
    if (device == "cuda0") {
      d = Device::Cuda;
    } else if (device != "cpu") {
      fail("-ot '{}': unknown device '{}' (tandem plans for CPU and CUDA0)", rule, rule.substr(eq + 1));
    }
    out.push_back({pattern, compile(pattern, fmt::format("-ot '{}'", rule)), d});
  }
  return out;
}

Policy parse_policy(std::string_view name) {
  if (name == "auto") return Policy::kAuto;
  if (name == "layers") return Policy::kLayers;
  fail("--placement '{}': expected auto (the default) or layers", name);
}

Plan make_plan(const ModelSpec& spec, const PlanOptions& options) { return Placer(spec, options).run(); }

Prediction predict_decode(const ModelSpec& spec, const Plan& plan, int64_t depth, std::optional<double> cpu_gbps,
                          std::optional<double> gpu_gbps) {
  const model::HParams& hp = spec.hp;
  Prediction p;
  p.cpu_gbps = cpu_gbps, p.gpu_gbps = gpu_gbps;
  // Per block: routed expert bytes read on the CPU, shared expert bytes read on the GPU.
  std::vector<double> cpu_experts(static_cast<size_t>(spec.n_blocks()), 0.0), gpu_shared(cpu_experts);
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    const TensorSpec& t = spec.tensors[i];
    const double b = tensor_bytes_per_token(t, hp, plan.mtp);
    const bool gpu = plan.tensor_device[i] == Device::Cuda;
    (gpu ? p.gpu_bytes : p.cpu_bytes) += b;
    if (t.layer >= 0 && t.layer < spec.n_blocks()) {
      if (!gpu && t.role == Role::kRoutedExperts) cpu_experts[static_cast<size_t>(t.layer)] += b;
      if (gpu && t.role == Role::kSharedExpert) gpu_shared[static_cast<size_t>(t.layer)] += b;
    }
  }
  const int64_t d = std::clamp<int64_t>(depth, 0, plan.n_ctx);
  for (const Buffer& buf : plan.buffers) {
    double b = 0;
    // Attention reads the cached positions; the recurrent state is read and written back.
    if (buf.kind == BufferKind::kKvCache) b = static_cast<double>(buf.bytes) * d / static_cast<double>(plan.n_ctx);
    if (buf.kind == BufferKind::kState) b = 2.0 * static_cast<double>(buf.bytes);
    (buf.device == Device::Cuda ? p.gpu_bytes : p.cpu_bytes) += b;
  }
  p.depth = d;
  if (p.cpu_bytes > 0 && cpu_gbps) p.cpu_ms = p.cpu_bytes / (*cpu_gbps * 1e9) * 1e3;
  if (p.gpu_bytes > 0 && gpu_gbps) p.gpu_ms = p.gpu_bytes / (*gpu_gbps * 1e9) * 1e3;
  if (cpu_gbps && gpu_gbps) {
    // While the CPU runs a layer's routed experts the GPU runs its shared expert.
    for (size_t l = 0; l < cpu_experts.size(); ++l) {
      p.overlap_ms += std::min(cpu_experts[l] / (*cpu_gbps * 1e9), gpu_shared[l] / (*gpu_gbps * 1e9)) * 1e3;
    }
  }
  const bool known = (p.cpu_bytes == 0 || cpu_gbps) && (p.gpu_bytes == 0 || gpu_gbps);
  if (known) {
    p.ms = p.cpu_ms + p.gpu_ms - p.overlap_ms;
    if (*p.ms > 0) p.tok_s = 1e3 / *p.ms;
  }
  return p;
}

ExecutionPlacement execution_placement(const ModelSpec& spec, const Plan& plan) {
  const auto n = static_cast<size_t>(spec.hp.n_layer);
  // Entry n is the (first) MTP block, which the model runs apart from the trunk.
  const size_t n_run = n + (spec.n_blocks() > spec.hp.n_layer ? 1 : 0);
  // First tensor seen per (layer, part), to name both sides of a split.
  std::vector<const TensorSpec*> main_seen(n_run, nullptr), experts_seen(n_run, nullptr);
  ExecutionPlacement out;
  out.layers.resize(n_run);
  const TensorSpec* head = nullptr;
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    const TensorSpec& t = spec.tensors[i];
    const Device d = plan.tensor_device[i];
    if (t.role == Role::kOutputHead || t.role == Role::kOutputNorm) {
      if (head && out.output != d) {
        fail("placement puts {} on {} but {} on {}: the output head and norm run on one device", head->name,
             device_name(out.output), t.name, device_name(d));
      }
      head = &t, out.output = d;
    }
    if (t.layer < 0 || t.layer >= static_cast<int64_t>(n_run)) continue;
    const auto l = static_cast<size_t>(t.layer);
    if (t.role == Role::kMtp && mtp_input_part(t.name)) {
      if (d != Device::Cpu) {
        fail("placement puts {} on {}: the MTP block's input part runs on the CPU, beside the token embedding",
             t.name, device_name(d));
      }
      continue;
    }
    const bool expert = t.role == Role::kRoutedExperts || mtp_expert(t);
    const TensorSpec*& seen = expert ? experts_seen[l] : main_seen[l];
    Device& slot = expert ? out.layers[l].experts : out.layers[l].main;
    if (seen && slot != d) {
      fail("placement splits layer {}'s {} over both devices ({} on {}, {} on {}); hybrid execution runs them on one",
           t.layer, expert ? "routed experts" : "every-token weights", seen->name, device_name(slot), t.name,
           device_name(d));
    }
    if (!seen) seen = &t, slot = d;
  }
  for (const Buffer& b : plan.buffers) {
    if (b.layer < 0 || b.layer >= static_cast<int64_t>(n_run)) continue;
    const auto l = static_cast<size_t>(b.layer);
    if (main_seen[l] && b.device != out.layers[l].main) {
      fail("placement puts layer {}'s {} on {} but its weights on {}", b.layer, buffer_name(b.kind),
           device_name(b.device), device_name(out.layers[l].main));
    }
  }
  // A layer without routed experts (dense) runs wholly on its main device.
  for (size_t l = 0; l < n_run; ++l) {
    if (!experts_seen[l]) out.layers[l].experts = out.layers[l].main;
  }
  if (n_run > n) {
    out.mtp = out.layers.back();
    out.layers.pop_back();
  }
  out.expert_streaming = plan.expert_stream_bytes > 0;
  return out;
}

std::vector<GroupRow> group_rows(const ModelSpec& spec, const Plan& plan) {
  // Report order: per-layer pieces in the order a layer runs them, then buffers, head, scratch.
  static const std::vector<std::string_view> kOrder = {
      role_name(Role::kTokenEmbedding), role_name(Role::kNorm),          role_name(Role::kAttention),
      role_name(Role::kDeltaNet),       role_name(Role::kRouter),        role_name(Role::kSharedExpert),
      role_name(Role::kDenseFfn),       role_name(Role::kRoutedExperts), role_name(Role::kOther),
      buffer_name(BufferKind::kKvCache), buffer_name(BufferKind::kState), role_name(Role::kMtp),
      role_name(Role::kOutputNorm),     role_name(Role::kOutputHead),    buffer_name(BufferKind::kScratch),
      buffer_name(BufferKind::kExpertStream)};
  struct Cell {
    uint64_t bytes = 0;
    size_t n_tensors = 0;
  };
  // (what, layer, device) -> bytes; and the layers each `what` occurs in, on any device.
  std::map<std::tuple<std::string_view, int64_t, Device>, Cell> cells;
  std::map<std::string_view, std::vector<int64_t>> layers;
  const auto add = [&](std::string_view what, int64_t layer, Device device, uint64_t bytes, size_t n) {
    Cell& c = cells[{what, layer, device}];
    c.bytes += bytes, c.n_tensors += n;
    layers[what].push_back(layer);
  };
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    const TensorSpec& t = spec.tensors[i];
    add(role_name(t.role), t.layer, plan.tensor_device[i], t.bytes, 1);
  }
  for (const Buffer& b : plan.buffers) add(buffer_name(b.kind), b.layer, b.device, b.bytes, 0);

  std::vector<GroupRow> rows;
  for (auto& [what, list] : layers) {
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
    for (const Device device : {Device::Cpu, Device::Cuda}) {
      // Runs of consecutive entries of `list` (the layers that have `what`) on `device`.
      GroupRow run;
      bool open = false;
      size_t run_end = 0;
      for (size_t k = 0; k < list.size(); ++k) {
        const auto it = cells.find({what, list[k], device});
        if (it == cells.end()) continue;
        if (open && run_end + 1 != k) rows.push_back(run), open = false;
        if (!open) run = GroupRow{std::string(what), list[k], list[k], 0, device, 0, 0}, open = true;
        run.last_layer = list[k], run.n_layers += list[k] >= 0 ? 1 : 0;
        run.bytes += it->second.bytes, run.n_tensors += it->second.n_tensors;
        run_end = k;
      }
      if (open) rows.push_back(run);
    }
  }
  const auto rank = [](const std::string& what) {
    return std::find(kOrder.begin(), kOrder.end(), what) - kOrder.begin();
  };
  std::sort(rows.begin(), rows.end(), [&](const GroupRow& a, const GroupRow& b) {
    return std::tuple(rank(a.what), a.first_layer, a.device) < std::tuple(rank(b.what), b.first_layer, b.device);
  });
  return rows;
}

}  // namespace tandem::plan
