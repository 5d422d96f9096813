#include "runtime/placement.h"

#include <vector>

#include <fmt/format.h>

#include "backend/device_info.h"
#include "core/error.h"
#include "plan/hardware.h"
#include "plan/memory.h"
#include "runtime/session.h"
#if defined(TANDEM_HAVE_CUDA)
#include "backend/cuda/cuda_backend.h"
#endif

namespace tandem::runtime {

void PlacementOptions::apply(plan::PlanOptions& po) const {
  po.policy = plan::parse_policy(placement);
  po.n_gpu_layers = n_gpu_layers;
  po.cpu_moe = cpu_moe;
  po.n_cpu_moe = n_cpu_moe;
  po.expert_streaming = model::ExpertStreaming::parse_mode(expert_streaming, "--expert-streaming");
  po.mtp = mtp;
  for (const std::string& rule : overrides) {
    for (plan::TensorOverride& r : plan::parse_tensor_overrides(rule)) po.overrides.push_back(std::move(r));
  }
}

bool PlacementOptions::asks_for_gpu() const {
  return !vram_budget.empty() || (n_gpu_layers && *n_gpu_layers > 0) || cpu_moe || n_cpu_moe || !overrides.empty() ||
         placement != "auto" || expert_streaming != "auto";
}

std::unique_ptr<Backend> place_model(model::Model& model, const gguf::ModelFiles& files, const PlacementOptions& o,
                                     int64_t n_ctx, model::KvCacheTypes kv, int64_t n_ubatch, bool quiet) {
  plan::PlanOptions po;
  o.apply(po);  // bad flags are errors even on a machine without a GPU
  plan::HardwareOverrides hwo;
  if (!o.vram_budget.empty()) hwo.vram_budget = plan::parse_size(o.vram_budget, "--vram-budget");
  const plan::Hardware hw = plan::probe_hardware(hwo, /*measure=*/false);
  if (!hw.gpu) {
    if (!quiet && (probe_gpus().built_with_cuda || o.asks_for_gpu())) {
      fmt::print(stderr, "note: {}; running on the CPU\n", hw.gpu_notice);
    }
    return nullptr;
  }
  po.n_ctx = n_ctx;
  po.kv = kv;
  po.n_ubatch = n_ubatch;
  po.vram_budget = hw.vram_budget;
  po.ram_budget = hw.ram_budget;
  const plan::ModelSpec spec = plan::model_spec(files, files.primary().name());
  const plan::Plan p = plan::make_plan(spec, po);
  const plan::ExecutionPlacement at = plan::execution_placement(spec, p);
  int64_t gpu_layers = 0, cpu_expert_layers = 0;
  for (const model::LayerPlacement& l : at.layers) {
    gpu_layers += l.main == Device::Cuda ? 1 : 0;
    cpu_expert_layers += l.main == Device::Cuda && l.experts == Device::Cpu ? 1 : 0;
  }
  const bool mtp_on_gpu = model.has_mtp() && (at.mtp.main == Device::Cuda || at.mtp.experts == Device::Cuda);
  if (gpu_layers == 0 && at.output == Device::Cpu && !mtp_on_gpu) return nullptr;
#if defined(TANDEM_HAVE_CUDA)
  auto gpu = std::make_unique<cuda::CudaBackend>(hw.gpu->index);
  model.set_placement(at.layers, at.output, at.mtp);  // at.mtp is all-CPU for a file without the block
  model.set_expert_streaming({po.expert_streaming, p.expert_stream_bytes, nullptr});
  if (!quiet) {
    fmt::print(stderr, "placement: {} of {} layers on {} ({} of {} budget), routed experts of {} of them on the CPU, "
               "head on {}{}{}\n", gpu_layers, at.layers.size(), hw.gpu->name, plan::format_size(p.gpu.total()),
               plan::format_size(p.vram_budget), cpu_expert_layers, at.output == Device::Cuda ? "the GPU" : "the CPU",
               !model.has_mtp() ? ""
               : fmt::format(", MTP block on {}{}", at.mtp.main == Device::Cuda ? "the GPU" : "the CPU",
                             at.mtp.experts != at.mtp.main ? " (its experts on the CPU)" : ""),
               at.expert_streaming ? fmt::format("; long prompts may stream them ({}, {} buffer)",
                                                 model::ExpertStreaming::mode_name(po.expert_streaming),
                                                 plan::format_size(p.expert_stream_bytes))
               : "");
  }
  return gpu;
#else
  (void)model, (void)gpu_layers, (void)cpu_expert_layers, (void)mtp_on_gpu;
  return nullptr;  // unreachable: without CUDA the probe finds no GPU
#endif
}

void prepare_weights(const model::Model& model, const model::Backends& backends, model::KvCacheTypes kv) {
  Session warm(model, backends, 1, 1, kv);
  const int32_t token = 0;
  warm.feed(std::span<const int32_t>(&token, 1));
  if (model.has_mtp()) {  // its weights too, so the first guesses do not pay for it
    const auto cache = model.new_mtp_sequence(backends, 1, kv);
    const auto ws = model.new_workspace(backends, 1);
    std::vector<float> hidden(static_cast<size_t>(model.hparams().n_embd), 0.0f);
    model::MtpInput in;
    in.state = cache.get();
    in.tokens = std::span<const int32_t>(&token, 1);
    in.hidden = hidden.data();
    model.mtp_forward(backends, *ws, in);  // no logits: the head was warmed above
  }
}

}  // namespace tandem::runtime
