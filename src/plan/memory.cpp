#include "plan/memory.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "core/error.h"

namespace tandem::plan {
namespace {

bool starts_with(std::string_view s, std::string_view head) { return s.substr(0, head.size()) == head; }
bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

}  // namespace

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kTokenEmbedding: return "token embedding";
    case Role::kOutputHead: return "output head";
    case Role::kOutputNorm: return "output norm";
    case Role::kAttention: return "attention";
    case Role::kDeltaNet: return "deltanet";
    case Role::kNorm: return "norms";
    case Role::kRouter: return "router";
    case Role::kSharedExpert: return "shared expert";
    case Role::kDenseFfn: return "dense ffn";
    case Role::kRoutedExperts: return "routed experts";
    case Role::kMtp: return "mtp block";
    case Role::kOther: return "other";
  }
  return "?";
}

bool every_token(Role role) {
  return role != Role::kTokenEmbedding && role != Role::kRoutedExperts && role != Role::kMtp;
}

uint64_t ModelSpec::weight_bytes() const {
  uint64_t total = 0;
  for (const TensorSpec& t : tensors) total += t.bytes;
  return total;
}

int64_t layer_of(std::string_view name) {
  if (!starts_with(name, "blk.")) return -1;
  name.remove_prefix(4);
  int64_t layer = -1;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), layer);
  if (ec != std::errc() || end == name.data() || end == name.data() + name.size() || *end != '.') return -1;
  return layer;
}

Role classify(std::string_view name, int64_t layer, const model::HParams& hp) {
  if (layer < 0) {
    if (name == "token_embd.weight") return Role::kTokenEmbedding;
    if (starts_with(name, "output_norm.")) return Role::kOutputNorm;
    if (starts_with(name, "output.")) return Role::kOutputHead;
    return Role::kOther;
  }
  if (layer >= hp.n_layer) return Role::kMtp;
  std::string_view part = name.substr(name.find('.', 4) + 1);  // after "blk.N."
  if (starts_with(part, "ffn_")) {
    if (contains(part, "_exps")) return Role::kRoutedExperts;  // also ffn_gate_up_exps, *_exps.bias
    if (contains(part, "_shexp")) return Role::kSharedExpert;  // includes ffn_gate_inp_shexp
    if (starts_with(part, "ffn_gate_inp") || starts_with(part, "ffn_exp_probs")) return Role::kRouter;
    if (starts_with(part, "ffn_norm")) return Role::kNorm;
    return Role::kDenseFfn;
  }
  if (starts_with(part, "exp_probs_b")) return Role::kRouter;
  if (starts_with(part, "ssm_")) return Role::kDeltaNet;
  if (contains(part, "norm")) return Role::kNorm;
  if (starts_with(part, "attn_")) return hp.is_full_attention(layer) ? Role::kAttention : Role::kDeltaNet;
  return Role::kOther;
}

ModelSpec model_spec(const gguf::ModelFiles& files, std::string name) {
  ModelSpec spec;
  spec.name = std::move(name);
  spec.hp = model::HParams::from_gguf(files);
  for (const gguf::TensorInfo* t : files.tensors()) {
    const int64_t layer = layer_of(t->name);
    spec.tensors.push_back({t->name, t->type, t->dims, t->n_bytes, classify(t->name, layer, spec.hp), layer});
  }
  return spec;
}

ModelSpec model_spec(const model::synth::Preset& preset, const model::synth::FileType& type) {
  ModelSpec spec;
  spec.name = fmt::format("preset {} ({}, {} layers)", preset.name, type.name, preset.n_layer);
  spec.hp = model::synth::hparams(preset);
  for (const model::synth::PlannedTensor& t : model::synth::plan_tensors(preset, type)) {
    const int64_t layer = layer_of(t.name);
    spec.tensors.push_back({t.name, t.type, t.dims, t.bytes(), classify(t.name, layer, spec.hp), layer});
  }
  return spec;
}

uint64_t kv_bytes_per_token(const model::HParams& hp, model::KvCacheTypes kv) {
  model::check_kv_cache_types(kv, hp.head_dim);
  const auto row = [&](DType t) {
    const DTypeInfo& info = dtype_info(t);
    return static_cast<uint64_t>(hp.n_head_kv * hp.head_dim) / info.block_elems * info.block_bytes;
  };
  return row(kv.k) + row(kv.v);
}

LayerBuffers layer_buffers(const model::HParams& hp, int64_t layer, int64_t n_ctx, model::KvCacheTypes kv,
                           bool mtp_runs) {
  LayerBuffers b;
  if (layer < 0 || layer >= hp.n_layer + hp.n_nextn) return b;
  if (layer >= hp.n_layer) {  // an MTP block: one full-attention layer, with a cache once it runs
    if (mtp_runs) b.kv = kv_bytes_per_token(hp, kv) * static_cast<uint64_t>(n_ctx);
    return b;
  }
  if (hp.is_full_attention(layer)) {
    b.kv = kv_bytes_per_token(hp, kv) * static_cast<uint64_t>(n_ctx);
  } else {
    const int64_t C = 2 * hp.ssm_n_k * hp.ssm_d_k + hp.ssm_n_v * hp.ssm_d_v;
    b.state = static_cast<uint64_t>((hp.ssm_conv_kernel - 1) * C + hp.ssm_n_v * hp.ssm_d_k * hp.ssm_d_v) * 4;
  }
  return b;
}

bool mtp_input_part(std::string_view name) { return name.find(".nextn.") != std::string_view::npos; }

uint64_t compute_scratch_bytes(const model::HParams& hp, int64_t n_ubatch) {
  // f32 values per token, following the CPU workspaces (model/qwen3.cpp, qwen35.cpp, blocks.cpp):
  // the residual stream and its normed and projected copies...
  const int64_t D = hp.n_embd, q = hp.n_head * hp.head_dim, kv = hp.n_head_kv * hp.head_dim;
  int64_t per_token = 3 * D;
  // ...attention (gated Qwen3.5 projects q and its gate together)...
  per_token += hp.is_hybrid() ? 4 * q + 2 * kv : 2 * q + 2 * kv;
  // ...the FFN: two intermediate rows, and for MoE the router logits and per-(token, expert)
  // slot rows, with quantized activation copies counted as a quarter of their f32 size...
  const int64_t k = hp.n_expert_used;
  const int64_t width = std::max({hp.n_ff_expert, hp.n_ff_shared, hp.n_expert > 0 ? int64_t{0} : hp.n_ff});
  per_token += 2 * width;
  if (hp.n_expert > 0) per_token += hp.n_expert + 3 * D + k * (2 * hp.n_ff_expert + D) + ((1 + k) * D + k * hp.n_ff_expert) / 4;
  // ...and DeltaNet's projections (conv input/output, value-width rows, q/k rows, per-head gates).
  if (hp.is_hybrid()) {
    const int64_t Cv = hp.ssm_n_v * hp.ssm_d_v, Ck = hp.ssm_n_k * hp.ssm_d_k, C = 2 * Ck + Cv;
    per_token += 2 * C + 4 * Cv + 2 * Ck + 4 * hp.ssm_n_v;
  }
  // The GPU's prompt MoE rounds each expert's rows up to 8-token chunks
  // (backend/cuda/expert_groups.h): up to 7 more rows per expert of input, output and the
  // two intermediate rows.
  int64_t padding = 0;
  if (hp.n_expert > 0) padding = 7 * std::min(n_ubatch * k, hp.n_expert) * (2 * D + 2 * hp.n_ff_expert);
  // One row of logits (decode and prompts return the last token's).
  return static_cast<uint64_t>(per_token * n_ubatch + padding + hp.n_vocab) * 4;
}

uint64_t vram_reserve(uint64_t vram_budget) {
  if (vram_budget == 0) return 0;
  return vram_budget / 20 + (uint64_t{256} << 20);
}

uint64_t parse_size(std::string_view text, std::string_view what) {
  const auto bad = [&](std::string_view why) -> uint64_t {
    fail("{}: '{}' is not a size ({}; write e.g. 12GiB, 12G, 12000MiB, 512M, 12GB or a byte count)", what, text,
         why);
  };
  std::string_view s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (s.empty()) return bad("empty");
  if (s.front() == '-') return bad("negative");
  size_t n = 0;
  while (n < s.size() && (std::isdigit(static_cast<unsigned char>(s[n])) || s[n] == '.')) ++n;
  if (n == 0) return bad("no number");
  double value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + n, value);
  if (ec != std::errc() || end != s.data() + n) return bad("bad number");
  std::string unit(s.substr(n));
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::tolower(c); });
  double scale = 0;
  static constexpr std::pair<std::string_view, double> kUnits[] = {
      {"", 1},       {"b", 1},       {"k", 0x1p10},  {"kib", 0x1p10}, {"m", 0x1p20},  {"mib", 0x1p20},
      {"g", 0x1p30}, {"gib", 0x1p30}, {"t", 0x1p40}, {"tib", 0x1p40}, {"kb", 1e3},    {"mb", 1e6},
      {"gb", 1e9},   {"tb", 1e12}};
  for (const auto& [name, factor] : kUnits) {
    if (unit == name) scale = factor;
  }
  if (scale == 0) return bad(fmt::format("unknown unit '{}'", s.substr(n)));
  const double bytes = value * scale;
  if (!std::isfinite(bytes) || bytes >= 0x1p63) return bad("too large");
  if (unit.empty() || unit == "b") {
    if (value != std::floor(value)) return bad("a byte count must be whole");
  }
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string format_size(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.2f} GiB", bytes / 0x1p30);
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", bytes / 0x1p20);
  if (bytes >= (uint64_t{1} << 10)) return fmt::format("{:.1f} KiB", bytes / 0x1p10);
  return fmt::format("{} B", bytes);
}

}  // namespace tandem::plan
