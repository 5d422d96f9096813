#include "model/model_registry.h"

#include <memory>
#include <thread>

#include "core/error.h"

namespace tandem::model {

int64_t validate_batch(const Workspace& workspace, std::span<const SequenceInput> batch) {
  int64_t total = 0;
  for (const SequenceInput& in : batch) {
    const auto n = static_cast<int64_t>(in.tokens.size());
    if (in.state->n_past + n > in.state->n_ctx) {
      fail("context full: {} positions used + {} new tokens exceed the context of {} (raise -c)",
           in.state->n_past, n, in.state->n_ctx);
    }
    if (n > 0 && in.logits == nullptr) fail("forward: no logits buffer for a sequence");
    if (in.verify && n > in.state->rollback_capacity()) {
      fail("forward: a verify pass of {} tokens exceeds the {} this sequence was prepared for (prepare_rollback)", n,
           in.state->rollback_capacity());
    }
    total += n;
  }
  if (total > workspace.max_tokens) {
    fail("forward: {} tokens exceed the workspace of {}", total, workspace.max_tokens);
  }
  return total;
}

void SequenceState::rollback(int64_t keep) {
  if (keep < 0 || keep > verify_tokens) {
    fail("rollback: keeping {} tokens of a verify pass of {} (the last forward pass{})", keep, verify_tokens,
         verify_tokens == 0 ? " was no verify pass" : "");
  }
  if (keep < verify_tokens) rollback_recurrent(keep);
  n_past -= verify_tokens - keep;
  verify_tokens = 0;
}

std::unique_ptr<SequenceState> Model::new_mtp_sequence(const Backends&, int64_t, KvCacheTypes) const {
  fail("this {} file has no MTP (NextN) draft block", hp_.arch);
}

void Model::mtp_forward(const Backends&, Workspace&, const MtpInput&) const {
  fail("this {} file has no MTP (NextN) draft block", hp_.arch);
}

void Model::set_placement(std::vector<LayerPlacement> layers, Device output, LayerPlacement mtp) {
  if (layers.size() != static_cast<size_t>(hp_.n_layer)) {
    fail("placement: {} layer entries for a model of {} layers", layers.size(), hp_.n_layer);
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].experts != layers[i].main && !(hp_.n_expert > 0)) {
      fail("placement: layer {} has no routed experts to place apart from the layer", i);
    }
  }
  if (mtp != LayerPlacement{} && !has_mtp()) fail("placement: an MTP block placed, but this {} file has none", hp_.arch);
  if (mtp.experts != mtp.main && !(hp_.n_expert > 0)) fail("placement: the MTP block has no routed experts to place apart");
  placement_ = std::move(layers);
  output_device_ = output;
  mtp_placement_ = mtp;
}

void Model::set_expert_streaming(ExpertStreamingPlan plan) {
  if (plan.mode != ExpertStreaming::Mode::kOff && plan.device_bytes > 0) {
    plan.policy = std::make_shared<ExpertStreaming>(plan.mode,
                                                    ExpertStreaming::prior(static_cast<int>(std::thread::hardware_concurrency())));
  } else {
    plan = {};
  }
  expert_streaming_ = std::move(plan);
}

std::unique_ptr<Model> load_model(const gguf::ModelFiles& files) {
  const gguf::File& f = files.primary();
  if (!f.contains("general.architecture")) fail("{}: no general.architecture key: not a model file", f.name());
  const std::string arch(f.architecture());
  if (arch == "qwen2" || arch == "qwen3" || arch == "qwen3moe") return make_qwen3_family(files);
  if (arch == "qwen35" || arch == "qwen35moe") return make_qwen35_family(files);
  fail("{}: architecture '{}' is not supported (supported: qwen2, qwen3, qwen3moe, qwen35, qwen35moe)",
       f.name(), arch);
}

}  // namespace tandem::model
