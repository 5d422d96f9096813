// The interface every architecture implements: load weights, make per-sequence state,
// run tokens through the network. Each architecture's forward pass is written out by hand
// in its own file over the block interface (backend/backend.h), readable top to bottom;
// a placement says on which device each layer's weights (and its routed experts) live.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "gguf/gguf_model_files.h"
#include "model/expert_streaming.h"
#include "model/hparams.h"

namespace tandem::model {

// Everything one sequence carries between calls: its KV cache (and, in hybrid models, its
// recurrent state) and how many positions are filled.
class SequenceState {
 public:
  virtual ~SequenceState() = default;
  int64_t n_past = 0;  // positions already in the cache
  int64_t n_ctx = 0;   // capacity in positions
  virtual void clear() {
    n_past = 0;
    verify_tokens = 0;
  }
  // Recurrent state (Qwen3.5's DeltaNet conv and delta-rule states) summarises every
  // position seen, so unlike a KV cache it cannot be cut back to a prefix: a prompt cache
  // keeps copies taken at chosen positions and restores one. Attention KV rows past n_past
  // are simply overwritten, so cutting n_past back is enough for them.
  virtual bool has_recurrent_state() const { return false; }
  virtual size_t recurrent_state_bytes() const { return 0; }
  // Copies the recurrent state to `out` (recurrent_state_bytes() bytes, host memory).
  virtual void save_recurrent_state(uint8_t* out) const {}
  // Restores what save_recurrent_state wrote; the caller sets n_past to where it was taken.
  virtual void load_recurrent_state(const uint8_t* in) {}

  // Speculative decoding. The last forward pass, when it was a verify pass
  // (SequenceInput::verify) of verify_tokens tokens, can be cut back to its first `keep`
  // tokens by rollback(keep), with no second pass: attention KV by n_past; a recurrent state
  // is rebuilt on its layers' devices from the state after the pass's first token (kept in a
  // second buffer: verify passes ping-pong between two) and the pass's recorded per-position
  // inputs, so it keeps at least that first token. Any later forward pass settles it (keeps
  // every token).
  int64_t verify_tokens = 0;
  // Makes room for verify passes of up to max_tokens tokens (a recurrent state's second
  // buffers and records, on its layers' devices: allocated on first use, grown only, never
  // per token). Without it a recurrent model refuses verify passes.
  virtual void prepare_rollback(int64_t /*max_tokens*/) {}
  // The longest verify pass this sequence can take (unbounded for attention-only state).
  virtual int64_t rollback_capacity() const { return INT64_MAX; }
  // Keeps the first `keep` tokens of the last verify pass (0 <= keep <= verify_tokens, and
  // keep >= 1 with a recurrent state; otherwise an error naming the numbers) and settles it.
  void rollback(int64_t keep);

 protected:
  // The recurrent part of rollback (keep < verify_tokens).
  virtual void rollback_recurrent(int64_t /*keep*/) {}
};

// Element types of the attention KV cache (llama.cpp's -ctk/-ctv). F16 halves the f32
// cache at a rounding cost llama.cpp also pays by default; Q8_0/Q4_0 shrink it further.
struct KvCacheTypes {
  DType k = DType::F16;
  DType v = DType::F16;
};
// Parses a llama.cpp cache type name (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1);
// anything else is an error naming `what` and the accepted names.
DType parse_kv_cache_type(std::string_view name, std::string_view what);
// Fails (naming the type) unless both types can hold heads of head_dim elements.
void check_kv_cache_types(KvCacheTypes kv, int64_t head_dim);

// The backends a forward pass runs on, by device. `cpu` is always set; `gpu` is the CUDA
// backend (or, in tests, a second CPU backend standing in for it) when a placement puts
// anything on Device::Cuda.
struct Backends {
  Backend* cpu = nullptr;
  Backend* gpu = nullptr;
  // Fails (naming the device) when that backend is absent.
  Backend& on(Device d) const;
};

// Where one layer runs: its every-token weights (norms, attention or DeltaNet, router,
// shared expert, dense FFN) on `main`, its routed experts on `experts`.
struct LayerPlacement {
  Device main = Device::Cpu;
  Device experts = Device::Cpu;
  bool operator==(const LayerPlacement&) const = default;
};

// Activation scratch for one forward call, sized once for the most tokens a call may
// carry (all sequences of a batch together). Shared by the sequences of a batch.
class Workspace {
 public:
  virtual ~Workspace() = default;
  int64_t max_tokens = 0;
};

// One sequence's part of a batched forward call.
struct SequenceInput {
  SequenceState* state = nullptr;
  std::span<const int32_t> tokens;  // appended at positions state->n_past..
  float* logits = nullptr;          // n_vocab floats for the last token, or [tokens][n_vocab]
  bool all_logits = false;          //   when all_logits is set
  float* hidden = nullptr;          // optional, host: [tokens][n_embd] final hidden states after
                                    //   output_norm (what an MTP draft block reads)
  bool verify = false;              // a speculative verify pass (SequenceState::rollback)
  std::span<const RowRange> head_rows = {};  // non-empty: logits over these vocabulary ids only, the
                                        //   rest -inf (Backend::logits_subset; a draft model's)
};

// One step of an MTP (NextN) draft block over one sequence: for each token x_p, the hidden
// state that predicted it (h_{p-1}: the trunk's, after output_norm, or the block's own
// previous output when chaining drafts). The block keeps its own KV cache (a SequenceState
// from new_mtp_sequence), which must see every position of the sequence.
struct MtpInput {
  SequenceState* state = nullptr;
  std::span<const int32_t> tokens;  // x_p, appended at positions state->n_past..
  const float* hidden = nullptr;    // host [tokens][n_embd]: h_{p-1} for each
  float* logits = nullptr;          // n_vocab floats for the last token, or [tokens][n_vocab];
  bool all_logits = false;          //   nullptr: no head (catching the cache up needs none)
  float* hidden_out = nullptr;      // optional host [tokens][n_embd]: the block's normed output
  std::span<const RowRange> head_rows = {};  // as SequenceInput's: logits over these ids only
};

class Model {
 public:
  virtual ~Model() = default;
  const HParams& hparams() const { return hp_; }
  // The widest weight row (for per-thread decode scratch).
  virtual int64_t max_row() const = 0;
  // A sequence's state: each layer's KV cache or recurrent state in the memory of the
  // device its layer runs on.
  virtual std::unique_ptr<SequenceState> new_sequence(const Backends& be, int64_t n_ctx, KvCacheTypes kv = {}) const = 0;
  // Activation buffers on every device the placement uses, and the backends' block scratch
  // sized for max_tokens.
  virtual std::unique_ptr<Workspace> new_workspace(const Backends& be, int64_t max_tokens) const = 0;
  // Runs the tokens of several sequences through the network in one pass: weights are read
  // once for all of them, attention stays within each sequence. Fails cleanly (nothing
  // changed) when a sequence's context would overflow or the batch exceeds the workspace.
  virtual void forward(const Backends& be, Workspace& workspace, std::span<const SequenceInput> batch) const = 0;
  // The MTP draft block (Qwen3.5's blk.<n_layer>.nextn), where the file has one.
  virtual bool has_mtp() const { return false; }
  virtual std::unique_ptr<SequenceState> new_mtp_sequence(const Backends& be, int64_t n_ctx, KvCacheTypes kv) const;
  virtual void mtp_forward(const Backends& be, Workspace& workspace, const MtpInput& in) const;
  // Tensors in the file that the architecture did not use.
  const std::vector<std::string>& unused_tensors() const { return unused_; }

  // Where each layer and the output head run (default: all on the CPU). Sequences and
  // workspaces made afterwards follow it. Weights placed on a GPU must already be in its
  // memory (the CUDA backend's upload); a CPU stand-in reads them where they are. `mtp`:
  // where the MTP block's layer (attention and FFN, with its KV cache) runs; its small
  // input part (enorm, hnorm, eh_proj) always runs on the CPU, where the embedding is.
  void set_placement(std::vector<LayerPlacement> layers, Device output, LayerPlacement mtp = {});
  // Hybrid prompts: whether layers with routed experts on the CPU may stream those weights
  // to the GPU, through a buffer of how many bytes (expert_streaming.h; off by default, the
  // planner turns it on when it has the VRAM). Read when a workspace is made.
  // One policy (and its measurements) for every session made after this call.
  void set_expert_streaming(ExpertStreamingPlan plan);
  const ExpertStreamingPlan& expert_streaming() const { return expert_streaming_; }
  const std::vector<LayerPlacement>& placement() const { return placement_; }
  Device output_device() const { return output_device_; }
  LayerPlacement mtp_placement() const { return mtp_placement_; }

 protected:
  HParams hp_;
  std::vector<std::string> unused_;
  std::vector<LayerPlacement> placement_;  // n_layer entries (filled by the loader)
  Device output_device_ = Device::Cpu;
  LayerPlacement mtp_placement_;
  ExpertStreamingPlan expert_streaming_;
};

// Checks a batch against the workspace and each sequence's context; returns total tokens.
int64_t validate_batch(const Workspace& workspace, std::span<const SequenceInput> batch);

// Picks the architecture from general.architecture; unsupported ones are an error naming it.
std::unique_ptr<Model> load_model(const gguf::ModelFiles& files);

}  // namespace tandem::model
