// What the architecture files share around the block interface (backend/backend.h):
// per-sequence KV caches, the workspace of activation buffers on each device a placement
// uses, moving the residual stream between devices, and the FFN of a layer whose routed
// experts may run on another device than the rest of it (hybrid GPU + CPU execution).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/model.h"

namespace tandem::model {

// A sequence's KV cache: per attention layer ("slot"), rows [position][H_kv * d] in the
// chosen cache types, in the memory of the device that layer runs on.
class KvSequence : public SequenceState {
 public:
  std::vector<Memory> k_cache, v_cache;  // [slot]
  KvCacheTypes types;
  size_t k_row_bytes = 0, v_row_bytes = 0;
  // One cache per entry of slot_devices. Fails (naming the type) when head_dim is not a
  // multiple of a type's block.
  void allocate_kv(const Backends& be, std::span<const Device> slot_devices, int64_t context, int64_t n_head_kv,
                   int64_t head_dim, KvCacheTypes kv);
};

// The sequences of a batch as attention layer `slot` sees them (all must be KvSequences).
void attention_sequences(std::span<const SequenceInput> batch, int64_t slot, std::vector<AttentionSequence>& out);

// One device's activation buffers: the residual x, the normed block input a, a block's
// output proj [T][D]; the router's choices [T][k]; and, on the device of routed experts
// that serve another device's layer, their input and output [T][D].
struct DeviceActivations {
  Memory x, a, proj, expert_in, expert_out, chosen, weight;
};

// The workspace every architecture uses: buffers on each device of the placement, the
// batch's token ids and per-sequence views, and where the residual stream is now.
class LayerWorkspace : public Workspace {
 public:
  std::array<DeviceActivations, 2> devices;  // by Device
  std::vector<int32_t> tokens;               // [T]
  std::vector<AttentionSequence> seqs;
  std::vector<DeltaNetSequence> delta_seqs;
  Device residual_on = Device::Cpu;
  std::shared_ptr<ExpertStreaming> streaming;  // hybrid prompts: CPU experts or streamed weights
  std::vector<float> mtp_concat;               // [max_tokens][2D]: an MTP block's input (sized once)
  DeviceActivations& on(Device d) { return devices[static_cast<size_t>(d)]; }
};

// Buffers for max_tokens on every device the placement uses (the CPU always: embeddings
// are looked up there). n_expert_used sizes the router's choices (0 for dense models).
// `streaming` starts the workspace's expert-streaming policy (off unless a GPU can stream)
// and sizes the GPU's slab buffer.
void allocate_workspace(const Backends& be, const std::vector<LayerPlacement>& placement, Device output,
                        int64_t max_tokens, int64_t n_embd, int64_t n_expert_used, const ExpertStreamingPlan& streaming,
                        LayerWorkspace& ws);

// Copies bytes from one device's memory to another's (one side is always the host's).
// queued: a copy to the host may complete later (Backend::copy_to_host_queued), by the
// next unqueued transfer from the same device.
void transfer(const Backends& be, Device from, const void* src, Device to, void* dst, size_t bytes,
              LayerWorkspace& ws, bool queued = false);

// Moves the residual stream [T][D] to device d if it is elsewhere; returns d's backend.
Backend& enter(const Backends& be, LayerWorkspace& ws, Device d, int64_t T, int64_t D);

// proj = FFN(a) for the layer placed at `at` (a and proj on at.main): dense SwiGLU, or the
// router + routed experts (+ shared expert). When the routed experts live on another
// device, the normed input and the router's choices go there, the experts run there while
// the main device computes the shared expert, and their sum comes back and is added; or,
// for a prompt long enough (ws.streaming decides), their weights come to the main device.
void ffn_block(const Backends& be, LayerWorkspace& ws, const FfnWeights& w, LayerPlacement at, int64_t T, int64_t D);

// Start and end of every batched forward pass:
// the batch's token ids and their embeddings into the CPU's x [T][D] (residual on the CPU);
void embed_batch(const Backends& be, LayerWorkspace& ws, const Tensor& token_embd, std::span<const SequenceInput> batch);
// final RMSNorm and head on `output`'s backend for the rows each sequence asked for (its
// last token, or all), then advances each sequence's n_past.
void finish_batch(const Backends& be, LayerWorkspace& ws, std::span<const SequenceInput> batch, int64_t D,
                  const std::vector<float>& output_norm, float rms_eps, const Tensor& output, Device output_device);

}  // namespace tandem::model
