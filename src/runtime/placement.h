// Where a model runs: the placement options every command that plans or runs a model takes
// (llama.cpp's spellings: -ngl, --cpu-moe, --n-cpu-moe, -ot; tandem's --vram-budget,
// --placement, --expert-streaming), and the step that turns them into a running placement:
// plan on this machine, set the model's per-layer devices and start the CUDA backend when
// anything lands on the GPU. The command-line spellings are added in cli/options.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_model_files.h"
#include "model/model.h"
#include "plan/planner.h"

namespace tandem::runtime {

struct PlacementOptions {
  std::string vram_budget;  // empty: the GPU's free memory
  std::optional<int64_t> n_gpu_layers, n_cpu_moe;
  bool cpu_moe = false;
  std::vector<std::string> overrides;
  std::string placement = "auto";
  std::string expert_streaming = "auto";
  // Not a flag: set when the command will speculate with the model's MTP block (plan/planner.h
  // PlanOptions::mtp).
  bool mtp = false;

  // The placement part of a plan's options (-ot rules parsed: bad ones are errors here).
  void apply(plan::PlanOptions& po) const;
  // Whether any flag asks for the GPU (then running without one is said, not silent).
  bool asks_for_gpu() const;
};

// Plans `model` for this machine (free VRAM or --vram-budget, RAM) and, when the plan puts
// anything on the GPU, sets the model's placement and returns the backend that runs it.
// Returns nullptr (model left all-CPU) without a usable GPU, saying so in one line on
// stderr when the build has CUDA or the flags asked for a GPU. Fails before anything is
// uploaded when the model does not fit (the planner's message).
std::unique_ptr<Backend> place_model(model::Model& model, const gguf::ModelFiles& files, const PlacementOptions& o,
                                     int64_t n_ctx, model::KvCacheTypes kv, int64_t n_ubatch, bool quiet = false);

// One throwaway token through the model, so that weights are made ready for their device
// now rather than inside the first timed prompt: the GPU backend uploads what it runs, the
// CPU repacks its matrices to the interleaved layout (kept by the CPU backend's op context
// for every session on it).
void prepare_weights(const model::Model& model, const model::Backends& backends, model::KvCacheTypes kv);

}  // namespace tandem::runtime
