// Hybrid prompts: where the routed experts of a layer run when their weights live on the
// CPU and the rest of the layer on the GPU (model/blocks.cpp ffn_block asks per layer and
// micro-batch).
//
// On the CPU they cost T * k * 3 * F * D multiply-adds at the CPU's rate. Streamed, the
// layer's expert weights (all E experts) cross to the GPU (the CPU unpacking its
// interleaved copy as they go, Backend::read_weight_rows) and the GPU's compute is small
// beside the copy. The CPU's cost grows with T and the copy's does not, so long prompts
// stream and short ones, and every decode step, do not. At Qwen3.5-35B-A3B's shape (k = 8,
// F = 512, D = 2048: 25 M MAC per token and ~0.5 GB of experts per layer) a CPU doing 600
// GMAC/s and a 25 GB/s link break even near 480 tokens per micro-batch.
//
// Rates start from priors (stated below) and are replaced by what each path measures
// (host wall time per call; a moving average). A path never measured is tried once on a
// micro-batch of at least kExploreTokens, so a wrong prior cannot hide the better path.
// One policy serves every session of a placed model (Model::set_expert_streaming), so what
// one session measured the next one uses; its calls are serialised by a mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>

namespace tandem::model {

class ExpertStreaming {
 public:
  enum class Mode { kOff, kAuto, kOn };
  // "off", "auto" or "on"; anything else is an error naming `what`.
  static Mode parse_mode(std::string_view text, std::string_view what);
  static std::string_view mode_name(Mode mode);

  struct Rates {
    double cpu_macs_per_s;      // routed-expert multiply-adds on the CPU
    double stream_bytes_per_s;  // expert weight bytes to the GPU, the CPU's copy included
  };
  // Priors: 30 GMAC/s per CPU thread (about a third of one AVX2 core's Q4_K peak measured in
  // cache by tandem_kernel_bench: memory and the other threads take the rest) and 12 GB/s
  // (half of PCIe 4.0 x16, for the CPU's copy into page-locked staging and the per-chunk
  // waits; interleaved rows cross as stored and are rearranged on the GPU, where a layout
  // allows: otherwise the CPU's unpack, 0.3-3 GB/s per thread, bounds it).
  static Rates prior(int cpu_threads);
  // Decode-sized micro-batches (up to this many tokens) never stream.
  static constexpr int64_t kMaxDecodeTokens = 8;
  static constexpr int64_t kExploreTokens = 128;

  explicit ExpertStreaming(Mode mode = Mode::kOff, Rates prior = {0.0, 0.0});
  Mode mode() const { return mode_; }
  Rates rates() const;

  // Whether a layer whose routed experts hold `bytes` of weights and cost `macs_per_token`
  // on the CPU streams them for a micro-batch of T tokens.
  bool stream(int64_t T, double bytes, double macs_per_token);
  // What a call took (host wall seconds), folded into that path's rate.
  void measured_cpu(double macs, double seconds);
  void measured_stream(double bytes, double seconds);

 private:
  static void fold(double& rate, bool& measured, double units, double seconds);
  mutable std::mutex mutex_;
  Mode mode_;
  Rates rates_;
  bool cpu_measured_ = false, stream_measured_ = false;
};

// What a placement allows: the mode, and the GPU buffer streamed slabs go through
// (backend.h: its size sets the slab size; the planner sizes it within the VRAM budget).
struct ExpertStreamingPlan {
  ExpertStreaming::Mode mode = ExpertStreaming::Mode::kOff;
  uint64_t device_bytes = 0;
  std::shared_ptr<ExpertStreaming> policy;  // made by Model::set_expert_streaming
};

}  // namespace tandem::model
