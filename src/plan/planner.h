// Which device holds each tensor, KV cache and state buffer, within a VRAM budget and the
// RAM, and what decode speed that placement allows (a bandwidth roofline).
//
// Default policy ("auto"): the GPU is filled by value per byte, where a byte's value is how
// often decode reads it. Every-token weights (attention, DeltaNet, norms, routers, shared
// experts, output head) and the KV cache / recurrent state are read in full for every token,
// so they go first, layer by layer; then routed experts, of which a token reads only
// n_expert_used / n_expert, whole layers at a time; the token embedding (one row per token)
// always stays on the CPU. Overrides keep llama.cpp's spellings and meanings (-ngl,
// --cpu-moe, --n-cpu-moe, -ot); `layers` is the plain layer split (Ollama-style baseline).
#pragma once

#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "model/model.h"
#include "plan/memory.h"

namespace tandem::plan {

std::string_view device_name(Device device);  // "CPU", "CUDA0" (llama.cpp's buffer names)

// One -ot rule: tensors whose name matches `pattern` (std::regex ECMAScript, searched
// anywhere in the name, as llama.cpp does) go to `device`.
struct TensorOverride {
  std::string pattern;
  std::regex regex;
  Device device = Device::Cpu;
};
// Parses one -ot argument: "REGEX=DEVICE" or several joined by commas as llama.cpp accepts;
// DEVICE is CPU or CUDA0 (any case). Bad regexes and devices are errors naming the rule.
std::vector<TensorOverride> parse_tensor_overrides(std::string_view arg);

enum class Policy {
  kAuto,    // value per byte (above)
  kLayers,  // --placement layers: whole layers from the first while they fit, then the head
};
// "auto" or "layers"; anything else is an error naming --placement.
Policy parse_policy(std::string_view name);

struct PlanOptions {
  int64_t n_ctx = 4096;           // context the KV cache is sized for
  model::KvCacheTypes kv;         // -ctk / -ctv
  int64_t n_ubatch = 512;         // most tokens per forward call (scratch size)
  uint64_t vram_budget = 0;       // bytes the GPU may hold, reserve included (0: CPU only)
  uint64_t ram_budget = 0;        // bytes of RAM available
  Policy policy = Policy::kAuto;
  // -ngl N (llama.cpp): the last N of the n_blocks + 1 slots (blocks 0..n_blocks-1, then the
  // output head) go to the GPU; the token embedding stays on the CPU. Replaces the policy.
  std::optional<int64_t> n_gpu_layers;
  bool cpu_moe = false;            // --cpu-moe: every routed expert tensor on the CPU
  std::optional<int64_t> n_cpu_moe;  // --n-cpu-moe N: routed experts of blocks 0..N-1 on the CPU
  // -ot rules in command-line order. They, then --cpu-moe, then --n-cpu-moe, are matched in
  // that order and the first match decides, as llama.cpp's tensor_buft_overrides.
  std::vector<TensorOverride> overrides;
  // Room on the GPU for streaming the CPU's routed experts during long prompts
  // (model/expert_streaming.h; two slabs, at most 64 MiB), when a GPU layer's experts stay on
  // the CPU. auto: only from room the placement leaves unused, so decode never pays for it;
  // on: the auto policy sets it aside before it places experts (it may displace a layer of
  // experts); off: none. Another placement gets it only if it still fits.
  model::ExpertStreaming::Mode expert_streaming = model::ExpertStreaming::Mode::kAuto;
  // MTP speculation will run (--spec mtp): the MTP block, its experts included, is read for
  // every drafted token, one token at a time, so the auto policy places it (with its KV
  // cache) right after the trunk's every-token weights and head, before any routed expert.
  // Its input part (nextn.*) stays on the CPU. Off: the block gets only what room is left.
  bool mtp = false;
};

enum class BufferKind { kKvCache, kState, kScratch, kExpertStream };
// "kv cache", "deltanet state", "compute scratch", "expert streaming"
std::string_view buffer_name(BufferKind kind);

struct Buffer {
  BufferKind kind = BufferKind::kScratch;
  int64_t layer = -1;  // -1 for scratch
  uint64_t bytes = 0;
  Device device = Device::Cpu;
};

struct DeviceTotals {
  uint64_t weights = 0, kv = 0, state = 0, scratch = 0;  // scratch includes the expert streaming buffer
  uint64_t total() const { return weights + kv + state + scratch; }
};

struct Plan {
  std::vector<Device> tensor_device;  // parallel to ModelSpec::tensors
  std::vector<bool> overridden;       // placed by -ot / --cpu-moe / --n-cpu-moe
  std::vector<Buffer> buffers;        // KV / state per layer, then scratch per device used
  DeviceTotals cpu, gpu;
  uint64_t vram_budget = 0;  // as given
  uint64_t vram_reserve = 0; // vram_reserve(vram_budget)
  uint64_t vram_usable = 0;  // budget - reserve: gpu.total() never exceeds it
  uint64_t ram_budget = 0;
  int64_t n_ctx = 0;         // positions the KV cache holds
  uint64_t expert_stream_bytes = 0;  // the GPU's expert streaming buffer (0: prompts do not stream)
  std::string policy;        // "auto", "layers", "-ngl 99", plus the overrides in use
  bool mtp = false;          // planned for MTP speculation (PlanOptions::mtp)
};

// Places every tensor and buffer. Fails, before anything is loaded, when overrides demand
// more than the VRAM budget (saying by how much) or when the model cannot fit in RAM + VRAM
// (saying how much is missing).
Plan make_plan(const ModelSpec& spec, const PlanOptions& options);

// Decode roofline. Bytes read per token per device: every-token weights in full, routed
// experts times n_expert_used / n_expert, one embedding row, the KV cache up to `depth`
// positions, the recurrent state read and written. Time per token is the sum over devices
// (in hybrid decode a layer's GPU part and its CPU experts run one after the other) minus,
// per layer with routed experts on the CPU, the overlap with its shared expert on the GPU
// (min of the two times). No latency terms: an upper bound on tok/s.
struct Prediction {
  double cpu_bytes = 0, gpu_bytes = 0;  // per token
  std::optional<double> cpu_gbps, gpu_gbps;
  double cpu_ms = 0, gpu_ms = 0, overlap_ms = 0;
  std::optional<double> ms, tok_s;  // absent when a used device's bandwidth is unknown
  int64_t depth = 0;
};
Prediction predict_decode(const ModelSpec& spec, const Plan& plan, int64_t depth, std::optional<double> cpu_gbps,
                          std::optional<double> gpu_gbps);

// The plan as hybrid execution runs it (model::Model::set_placement): per trunk layer the
// device of its every-token weights (with its KV cache / state) and of its routed experts,
// and the output head's device. Fails naming the layer when a rule split either part over
// both devices, which the executor cannot run.
struct ExecutionPlacement {
  std::vector<model::LayerPlacement> layers;  // hp.n_layer entries
  Device output = Device::Cpu;
  model::LayerPlacement mtp;  // the MTP block's layer (its input part runs on the CPU)
  bool expert_streaming = false;  // the plan holds the GPU room to stream CPU layers' experts
};
ExecutionPlacement execution_placement(const ModelSpec& spec, const Plan& plan);

// The placement summarised: one row per (what, device) over a run of consecutive layers
// that have it ("routed experts, blk 20-39, CUDA0, 9.1 GiB").
struct GroupRow {
  std::string what;      // role_name or buffer_name
  int64_t first_layer = -1, last_layer = -1, n_layers = 0;  // -1: not a per-layer group
  Device device = Device::Cpu;
  uint64_t bytes = 0;
  size_t n_tensors = 0;  // 0 for buffers
};
std::vector<GroupRow> group_rows(const ModelSpec& spec, const Plan& plan);

}  // namespace tandem::plan
