// `tandem fit (-m MODEL | --preset NAME) [-c CTX] [--vram-budget SIZE] [--gpu-bw GB/s]
// [--cpu-bw GB/s] [-ctk T -ctv T] [-ngl N] [--cpu-moe] [--n-cpu-moe N] [-ot REGEX=DEV]...
// [--placement auto|layers] [--json]`: where each tensor would go on this machine (or on
// one described by the flags) and the decode speed that allows, before anything is loaded
// or even downloaded. Reads only the GGUF header, or a synth preset's tensor list.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "gguf/gguf_model_files.h"
#include "model/synth.h"
#include "plan/hardware.h"
#include "plan/memory.h"
#include "plan/planner.h"

namespace tandem::cli {
namespace {

using Json = nlohmann::ordered_json;

struct FitOptions {
  std::string model, preset, type = "q4_k_m";
  int64_t layers = 0;
  bool layers_given = false;
  int64_t n_ctx = 0;  // 0: min(training context, 4096), as `run`
  int64_t n_ubatch = 512;
  std::optional<int64_t> depth;
  std::string ram;
  std::optional<double> gpu_bw, cpu_bw;
  KvCacheOptions kv;
  runtime::PlacementOptions placement;
  bool json = false, tensors = false;
  std::string spec = "auto";  // as run's --spec: auto and mtp plan the MTP block as every-token weights
  std::string sweep_vram;  // "FROM:TO:STEP" in GiB; empty: no sweep
};

std::string layer_range(const plan::GroupRow& r) {
  if (r.first_layer < 0) return "-";
  if (r.first_layer == r.last_layer) return std::to_string(r.first_layer);
  return fmt::format("{}-{} ({})", r.first_layer, r.last_layer, r.n_layers);
}

// Bytes per token in GB (1e9), or MB for small models.
std::string per_token(double bytes) {
  return bytes >= 1e7 ? fmt::format("{:.3f} GB", bytes / 1e9) : fmt::format("{:.3f} MB", bytes / 1e6);
}

Json totals_json(const plan::DeviceTotals& t) {
  return Json{{"weights", t.weights}, {"kv_cache", t.kv}, {"state", t.state}, {"scratch", t.scratch},
              {"total", t.total()}};
}

template <typename T>
Json optional_json(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

// --sweep-vram: the plan and the decode roofline at each VRAM budget, so a user sees what
// a bigger card would buy. One row per budget: bytes on the GPU, bytes each side reads per
// token, predicted tok/s.
void run_vram_sweep(const FitOptions& a, const plan::ModelSpec& spec, plan::PlanOptions po, const plan::Hardware& hw,
                    int64_t depth) {
  double from = 4, to = 24, step = 2;
  const bool parsed = a.sweep_vram == "default" || std::sscanf(a.sweep_vram.c_str(), "%lf:%lf:%lf", &from, &to, &step) == 3;
  if (!parsed || !(from >= 0) || !(to >= from) || !(step > 0) || (to - from) / step > 1000) {
    fail("--sweep-vram wants FROM:TO:STEP in GiB with 0 <= FROM <= TO and STEP > 0 (e.g. 4:24:2), got '{}'",
         a.sweep_vram);
  }
  if (!hw.gpu_gbps) fail("--sweep-vram: no GPU here to measure; give --gpu-bw GB/s (e.g. 1008 for an RTX 4090)");
  po.ram_budget = hw.ram_budget;
  Json rows = Json::array();
  for (double gib = from; gib <= to + 1e-9; gib += step) {
    po.vram_budget = static_cast<uint64_t>(gib * (1ull << 30));
    plan::Plan plan;
    try {
      plan = plan::make_plan(spec, po);
    } catch (const Error& e) {  // this budget leaves too much for the RAM: a row that says so
      rows.push_back(Json{{"vram_budget_gib", gib}, {"tok_s", nullptr}, {"error", e.what()}});
      continue;
    }
    const plan::Prediction pred = plan::predict_decode(spec, plan, depth, hw.cpu_gbps, hw.gpu_gbps);
    rows.push_back(Json{{"vram_budget_gib", gib},
                        {"gpu_weights", plan.gpu.weights},
                        {"gpu_total", plan.gpu.total()},
                        {"gpu_bytes_per_token", pred.gpu_bytes},
                        {"cpu_bytes_per_token", pred.cpu_bytes},
                        {"tok_s", optional_json(pred.tok_s)}});
  }
  if (a.json) {
    fmt::print("{}\n", Json{{"model", spec.name},
                            {"n_ctx", po.n_ctx},
                            {"depth", depth},
                            {"gpu_gbps", optional_json(hw.gpu_gbps)},
                            {"cpu_gbps", optional_json(hw.cpu_gbps)},
                            {"sweep", rows}}.dump(2));
    return;
  }
  fmt::print("model: {}; context {}, decode at depth {}; GPU {:.0f} GB/s ({}), CPU {} ({})\n\n", spec.name, po.n_ctx,
             depth, *hw.gpu_gbps, hw.gpu_bw_source,
             hw.cpu_gbps ? fmt::format("{:.1f} GB/s", *hw.cpu_gbps) : "unknown", hw.cpu_bw_source);
  fmt::print("| {:>8} | {:>11} | {:>13} | {:>13} | {:>9} |\n", "VRAM", "on GPU", "GPU read/tok", "CPU read/tok",
             "tok/s");
  fmt::print("|{:->10}|{:->13}|{:->15}|{:->15}|{:->11}|\n", ":", ":", ":", ":", ":");
  for (const Json& r : rows) {
    if (r.contains("error")) {
      fmt::print("| {:>4.1f} GiB | does not fit: {} |\n", r["vram_budget_gib"].get<double>(), r["error"].get<std::string>());
      continue;
    }
    fmt::print("| {:>4.1f} GiB | {:>11} | {:>13} | {:>13} | {:>9} |\n", r["vram_budget_gib"].get<double>(),
               plan::format_size(r["gpu_total"].get<uint64_t>()), per_token(r["gpu_bytes_per_token"].get<double>()),
               per_token(r["cpu_bytes_per_token"].get<double>()),
               r["tok_s"].is_null() ? "-" : fmt::format("{:.1f}", r["tok_s"].get<double>()));
  }
  fmt::print("\npredicted tok/s is an upper bound: bandwidth only, no latencies\n");
}

void run_fit(const FitOptions& a) {
  // The model: a file's header, or a preset's tensor list.
  if (a.model.empty() == a.preset.empty()) fail("fit: give -m MODEL or --preset NAME (one of them)");
  if (a.layers_given && a.preset.empty()) fail("fit: --layers needs --preset");
  const plan::ModelSpec spec = [&] {
    if (!a.model.empty()) return plan::model_spec(gguf::ModelFiles::open(a.model), a.model);
    const model::synth::Preset& preset = model::synth::find_preset(a.preset);
    return plan::model_spec(a.layers_given ? model::synth::with_layers(preset, a.layers) : preset,
                            model::synth::find_file_type(a.type));
  }();
  const model::HParams& hp = spec.hp;

  plan::HardwareOverrides hwo;
  if (!a.placement.vram_budget.empty()) hwo.vram_budget = plan::parse_size(a.placement.vram_budget, "--vram-budget");
  if (!a.ram.empty()) hwo.ram = plan::parse_size(a.ram, "--ram");
  for (const auto& [value, flag] : {std::pair{a.gpu_bw, "--gpu-bw"}, std::pair{a.cpu_bw, "--cpu-bw"}}) {
    if (value && !(*value > 0 && *value < 1e6)) fail("{} must be a bandwidth in GB/s above 0, got {}", flag, *value);
  }
  hwo.gpu_gbps = a.gpu_bw, hwo.cpu_gbps = a.cpu_bw;

  plan::PlanOptions po;
  if (a.n_ctx < 0) fail("-c must be >= 0 (0: min(training context, 4096)), got {}", a.n_ctx);
  po.n_ctx = a.n_ctx > 0 ? a.n_ctx : std::min<int64_t>(hp.n_ctx_train > 0 ? hp.n_ctx_train : 4096, 4096);
  po.kv = a.kv.types();
  po.n_ubatch = a.n_ubatch;
  if (a.spec != "auto" && a.spec != "mtp" && a.spec != "none") {
    fail("--spec '{}': fit plans for none, auto or mtp (the other methods place nothing)", a.spec);
  }
  a.placement.apply(po);
  po.mtp = a.spec != "none" && hp.n_nextn > 0;
  const int64_t depth = a.depth.value_or(po.n_ctx);
  if (depth < 0 || depth > po.n_ctx) fail("--depth must be 0..{} (the context), got {}", po.n_ctx, depth);
  // Check the flags before probing: measuring takes a second.
  plan::kv_bytes_per_token(hp, po.kv);

  const plan::Hardware hw = plan::probe_hardware(hwo, /*measure=*/true);
  if (!a.sweep_vram.empty()) {
    if (!a.placement.vram_budget.empty()) fail("--sweep-vram sets the VRAM budget itself; drop --vram-budget");
    run_vram_sweep(a, spec, po, hw, depth);
    return;
  }
  po.vram_budget = hw.vram_budget;
  po.ram_budget = hw.ram_budget;
  const plan::Plan plan = plan::make_plan(spec, po);
  const plan::Prediction pred = plan::predict_decode(spec, plan, depth, hw.cpu_gbps, hw.gpu_gbps);
  const std::vector<plan::GroupRow> rows = plan::group_rows(spec, plan);

  std::vector<std::string> notes;
  if (hw.gpu && hwo.vram_budget && *hwo.vram_budget > hw.gpu->free_bytes) {
    notes.push_back(fmt::format("--vram-budget {} is more than CUDA0's free {}", plan::format_size(*hwo.vram_budget),
                                plan::format_size(hw.gpu->free_bytes)));
  }
  if (!pred.tok_s) {
    if (pred.gpu_bytes > 0 && !hw.gpu_gbps) notes.push_back("no GPU bandwidth: give --gpu-bw GB/s to predict tok/s");
    if (pred.cpu_bytes > 0 && !hw.cpu_gbps) notes.push_back("no CPU bandwidth: give --cpu-bw GB/s");
  }
  try {
    plan::execution_placement(spec, plan);
  } catch (const Error& e) {
    notes.push_back(fmt::format("this placement cannot be run: {}", e.what()));
  }
  int64_t n_attention = 0;
  for (int64_t l = 0; l < hp.n_layer; ++l) n_attention += hp.is_full_attention(l) ? 1 : 0;
  const uint64_t kv_per_token = plan::kv_bytes_per_token(hp, po.kv) * static_cast<uint64_t>(n_attention);

  if (a.json) {
    Json j;
    j["model"] = Json{{"name", spec.name},
                      {"arch", hp.arch},
                      {"n_layer", hp.n_layer},
                      {"n_nextn", hp.n_nextn},
                      {"n_expert", hp.n_expert},
                      {"n_expert_used", hp.n_expert_used},
                      {"weight_bytes", spec.weight_bytes()}};
    j["context"] = Json{{"n_ctx", po.n_ctx},        {"n_ubatch", po.n_ubatch},         {"type_k", a.kv.k},
                        {"type_v", a.kv.v},         {"kv_bytes_per_token", kv_per_token},
                        {"attention_layers", n_attention}};
    j["hardware"] = Json{{"gpu", hw.gpu ? Json(hw.gpu->name) : Json(nullptr)},
                         {"gpu_notice", hw.gpu_notice},
                         {"logical_cpus", hw.logical_cpus},
                         {"ram_total", hw.ram_total},
                         {"ram_available", hw.ram_available},
                         {"gpu_gbps", optional_json(hw.gpu_gbps)},
                         {"gpu_gbps_source", hw.gpu_bw_source},
                         {"cpu_gbps", optional_json(hw.cpu_gbps)},
                         {"cpu_gbps_source", hw.cpu_bw_source},
                         {"host_to_device_gbps", optional_json(hw.host_to_device_gbps)},
                         {"device_to_host_gbps", optional_json(hw.device_to_host_gbps)}};
    j["budget"] = Json{{"vram_budget", plan.vram_budget}, {"vram_source", hw.vram_source},
                       {"vram_reserve", plan.vram_reserve}, {"vram_usable", plan.vram_usable},
                       {"ram", plan.ram_budget},            {"ram_source", hw.ram_source}};
    j["placement"] = plan.policy;
    j["mtp"] = plan.mtp;
    j["expert_streaming"] = Json{{"mode", model::ExpertStreaming::mode_name(po.expert_streaming)},
                                 {"buffer_bytes", plan.expert_stream_bytes}};
    j["groups"] = Json::array();
    for (const plan::GroupRow& r : rows) {
      j["groups"].push_back(Json{{"what", r.what},
                                 {"first_layer", r.first_layer},
                                 {"last_layer", r.last_layer},
                                 {"n_layers", r.n_layers},
                                 {"device", plan::device_name(r.device)},
                                 {"bytes", r.bytes},
                                 {"n_tensors", r.n_tensors}});
    }
    j["totals"] = Json{{"CUDA0", totals_json(plan.gpu)}, {"CPU", totals_json(plan.cpu)}};
    j["decode"] = Json{{"depth", pred.depth},
                       {"gpu_bytes_per_token", pred.gpu_bytes},
                       {"cpu_bytes_per_token", pred.cpu_bytes},
                       {"gpu_ms", pred.gpu_ms},
                       {"cpu_ms", pred.cpu_ms},
                       {"overlap_ms", pred.overlap_ms},
                       {"ms_per_token", optional_json(pred.ms)},
                       {"tok_s", optional_json(pred.tok_s)}};
    if (a.tensors) {
      j["tensors"] = Json::array();
      for (size_t i = 0; i < spec.tensors.size(); ++i) {
        const plan::TensorSpec& t = spec.tensors[i];
        j["tensors"].push_back(Json{{"name", t.name},
                                    {"role", plan::role_name(t.role)},
                                    {"type", dtype_name(t.type)},
                                    {"dims", t.dims},
                                    {"bytes", t.bytes},
                                    {"device", plan::device_name(plan.tensor_device[i])},
                                    {"overridden", static_cast<bool>(plan.overridden[i])}});
      }
    }
    j["notes"] = notes;
    fmt::print("{}\n", j.dump(2));
    return;
  }

  fmt::print("model:     {}: {}, {} layers{}{}, {} of weights\n", spec.name, hp.arch, hp.n_layer,
             hp.n_nextn > 0 ? fmt::format(" + {} MTP", hp.n_nextn) : "",
             hp.n_expert > 0 ? fmt::format(", {} experts ({} used)", hp.n_expert, hp.n_expert_used) : "",
             plan::format_size(spec.weight_bytes()));
  fmt::print("context:   {} positions, KV {}/{}: {} per position over {} attention layer{}; micro-batch {}\n",
             po.n_ctx, a.kv.k, a.kv.v, plan::format_size(kv_per_token), n_attention, n_attention == 1 ? "" : "s",
             po.n_ubatch);
  fmt::print("hardware:  {}; {} logical CPUs{}\n",
             hw.gpu ? fmt::format("CUDA0 {} ({} free)", hw.gpu->name, plan::format_size(hw.gpu->free_bytes))
                    : "no GPU (" + hw.gpu_notice + ")",
             hw.logical_cpus,
             hw.host_to_device_gbps ? fmt::format("; host->device {:.1f} GB/s, device->host {:.1f} GB/s",
                                                  *hw.host_to_device_gbps, *hw.device_to_host_gbps)
                                    : "");
  fmt::print("budget:    VRAM {} ({}) - reserve {} (5% + 256 MiB) = {} usable; RAM {} ({})\n",
             plan::format_size(plan.vram_budget), hw.vram_source, plan::format_size(plan.vram_reserve),
             plan::format_size(plan.vram_usable), plan::format_size(plan.ram_budget), hw.ram_source);
  fmt::print("placement: {}{}\n\n", plan.policy,
             plan.mtp ? " (planned for MTP speculation: the MTP block, KV cache included, with the every-token weights)"
                      : "");
  fmt::print("| {:<16} | {:>13} | {:<6} | {:>11} | {:>7} |\n", "what", "layers", "device", "bytes", "tensors");
  fmt::print("|{:-<18}|{:->15}|{:-<8}|{:->13}|{:->9}|\n", "", ":", "", ":", ":");
  for (const plan::GroupRow& r : rows) {
    fmt::print("| {:<16} | {:>13} | {:<6} | {:>11} | {:>7} |\n", r.what, layer_range(r), plan::device_name(r.device),
               plan::format_size(r.bytes), r.n_tensors > 0 ? std::to_string(r.n_tensors) : "-");
  }
  fmt::print("\n| {:<6} | {:>11} | {:>11} | {:>11} | {:>11} | {:>11} | {:>11} |\n", "device", "weights", "kv cache",
             "state", "scratch", "total", "available");
  fmt::print("|{:-<8}|{:->13}|{:->13}|{:->13}|{:->13}|{:->13}|{:->13}|\n", "", ":", ":", ":", ":", ":", ":");
  for (const auto& [name, t, avail] : {std::tuple{"CUDA0", plan.gpu, plan.vram_usable},
                                       std::tuple{"CPU", plan.cpu, plan.ram_budget}}) {
    fmt::print("| {:<6} | {:>11} | {:>11} | {:>11} | {:>11} | {:>11} | {:>11} |\n", name,
               plan::format_size(t.weights), plan::format_size(t.kv), plan::format_size(t.state),
               plan::format_size(t.scratch), plan::format_size(t.total()), plan::format_size(avail));
  }
  const auto side = [](const char* name, double bytes, const std::optional<double>& gbps, const std::string& source,
                       double ms) {
    if (bytes == 0) return fmt::format("{} reads nothing", name);
    if (!gbps) return fmt::format("{} reads {}/token (bandwidth unknown)", name, per_token(bytes));
    return fmt::format("{} reads {}/token at {:.0f} GB/s ({}) = {:.2f} ms", name, per_token(bytes), *gbps, source, ms);
  };
  fmt::print("\ndecode roofline at depth {}: {}; {}; overlap {:.2f} ms\n", pred.depth,
             side("CUDA0", pred.gpu_bytes, hw.gpu_gbps, hw.gpu_bw_source, pred.gpu_ms),
             side("CPU", pred.cpu_bytes, hw.cpu_gbps, hw.cpu_bw_source, pred.cpu_ms), pred.overlap_ms);
  if (pred.tok_s) {
    fmt::print("predicted: {:.2f} ms/token, {:.1f} tok/s (an upper bound: bandwidth only, no latencies)\n", *pred.ms,
               *pred.tok_s);
  }
  if (a.tensors) {
    fmt::print("\n");
    for (size_t i = 0; i < spec.tensors.size(); ++i) {
      const plan::TensorSpec& t = spec.tensors[i];
      fmt::print("{:<40} {:<15} {:>11} {}{}\n", t.name, plan::role_name(t.role), plan::format_size(t.bytes),
                 plan::device_name(plan.tensor_device[i]), plan.overridden[i] ? " (override)" : "");
    }
  }
  for (const std::string& n : notes) fmt::print("note: {}\n", n);
}

}  // namespace

void register_fit(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "fit",
      "Plan where each tensor goes (GPU within a VRAM budget, CPU) and predict decode tok/s\n"
      "from a bandwidth roofline, from the GGUF header alone or a synth preset (no download).");
  auto o = std::make_shared<FitOptions>();
  cmd->add_option("-m,--model", o->model, "GGUF model (any part of a split model)");
  cmd->add_option("--preset", o->preset, "Plan for a synth preset instead of a file (tandem synth --list)");
  auto* layers = cmd->add_option("--layers", o->layers, "With --preset: keep only the first N layers");
  cmd->add_option("--type", o->type, "With --preset: file type as llama-quantize names it")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size (0: min(training context, 4096))")->capture_default_str();
  cmd->add_option("--ubatch-size", o->n_ubatch, "Most tokens per forward call, for the scratch (-ub)")
      ->capture_default_str();
  cmd->add_option("--depth", o->depth, "Cached positions the roofline's decode step reads (default: the context)");
  cmd->add_option("--ram", o->ram, "RAM the plan may use (default: MemAvailable)");
  cmd->add_option("--gpu-bw", o->gpu_bw, "GPU memory bandwidth in GB/s (default: measured; needed without a GPU)");
  cmd->add_option("--cpu-bw", o->cpu_bw, "CPU memory read bandwidth in GB/s (default: measured)");
  o->kv.add_to(cmd);
  add_placement_options(cmd, o->placement);
  cmd->add_option("--spec", o->spec,
                  "Speculation the plan is for, as run's --spec: auto or mtp place a file's MTP block with the\n"
                  "every-token weights (with its KV cache); none leaves it only spare room")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->add_flag("--tensors", o->tensors, "Also list every tensor with its device");
  auto* sweep = cmd->add_option("--sweep-vram", o->sweep_vram,
                  "Predict decode tok/s at each VRAM budget FROM:TO:STEP GiB (4:24:2 when given without a\n"
                  "value): what a bigger card would buy")
      ->expected(0, 1);
  cmd->callback([o, layers, sweep] {
    o->layers_given = layers->count() > 0;
    if (sweep->count() > 0 && o->sweep_vram.empty()) o->sweep_vram = "default";  // given without a value: 4:24:2
    run_fit(*o);
  });
}

}  // namespace tandem::cli
