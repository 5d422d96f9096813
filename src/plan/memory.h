// What a model needs in memory, from its tensor list alone (no weights are read): every
// tensor's bytes and role, the KV cache and recurrent state for a context, the compute
// scratch, and the VRAM safety reserve. The planner (planner.h) places these.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "gguf/gguf_model_files.h"
#include "model/hparams.h"
#include "model/model.h"
#include "model/synth.h"

namespace tandem::plan {

// What a tensor is for; decides how often decode reads it.
enum class Role {
  kTokenEmbedding,  // token_embd: one row read per token
  kOutputHead,      // output.weight: read whole every token
  kOutputNorm,
  kAttention,       // attn_q/k/v/output (+ biases) of full-attention layers
  kDeltaNet,        // attn_qkv, attn_gate, ssm_* of Gated DeltaNet layers
  kNorm,            // per-layer norms (attn_norm, post_attention_norm, ffn_norm, q/k norms)
  kRouter,          // ffn_gate_inp: the expert router
  kSharedExpert,    // ffn_{gate,up,down}_shexp and its sigmoid gate ffn_gate_inp_shexp
  kDenseFfn,        // ffn_{gate,up,down} of dense models
  kRoutedExperts,   // ffn_{gate,up,down}_exps: only n_expert_used of n_expert read per token
  kMtp,             // the multi-token-prediction (nextn) blocks after the trunk: not run yet
  kOther,           // anything else (assumed read every token)
};
std::string_view role_name(Role role);
// Read in full for every decoded token (the planner's first claim on the GPU).
bool every_token(Role role);

struct TensorSpec {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> dims;  // ggml order
  uint64_t bytes = 0;
  Role role = Role::kOther;
  int64_t layer = -1;         // blk.N; -1 for tensors outside the blocks
};

// A model as the planner sees it: hyper-parameters and the tensor list.
struct ModelSpec {
  std::string name;  // file path or preset name (for reports)
  model::HParams hp;
  std::vector<TensorSpec> tensors;

  int64_t n_blocks() const { return hp.n_layer + hp.n_nextn; }  // trunk + MTP blocks
  uint64_t weight_bytes() const;
};

// Role of a tensor by its llama.cpp name; blocks numbered >= hp.n_layer are MTP blocks.
Role classify(std::string_view name, int64_t layer, const model::HParams& hp);
// "blk.12.attn_q.weight" -> 12; -1 when the name is not a block tensor.
int64_t layer_of(std::string_view name);

// From a GGUF (one file or a split set): the header only, no weight is touched.
ModelSpec model_spec(const gguf::ModelFiles& files, std::string name);
// From a synth preset (model/synth.h), with the tensors its writer would write.
ModelSpec model_spec(const model::synth::Preset& preset, const model::synth::FileType& type);

// Per-sequence buffers of one layer, in bytes.
struct LayerBuffers {
  uint64_t kv = 0;     // K and V cache for n_ctx positions (full-attention layers only)
  uint64_t state = 0;  // DeltaNet recurrent state: conv (K_c-1) x C floats + n_v x d_k x d_v floats
};
// Bytes of K plus V per cached position in one full-attention layer.
uint64_t kv_bytes_per_token(const model::HParams& hp, model::KvCacheTypes kv);
LayerBuffers layer_buffers(const model::HParams& hp, int64_t layer, int64_t n_ctx, model::KvCacheTypes kv,
                           bool mtp_runs = false);
// Whether a tensor of an MTP block is its small input part (enorm, hnorm, eh_proj, ...:
// "blk.N.nextn.*"), which runs on the CPU beside the token embedding.
bool mtp_input_part(std::string_view name);

// Activation scratch of one device for a forward call of up to n_ubatch tokens: the widest
// per-token activations of any layer (f32, plus their quantized copies) times the tokens,
// and one row of logits. An estimate, not the allocator's exact figure; the reserve covers
// the difference.
uint64_t compute_scratch_bytes(const model::HParams& hp, int64_t n_ubatch);

// Kept free on the GPU: 5% of the budget + 256 MiB, for the CUDA context's own allocations,
// cuBLAS workspace, allocator fragmentation and the error of the scratch estimate.
uint64_t vram_reserve(uint64_t vram_budget);

// "12GiB", "12G" (binary: K, M, G, T with or without "iB"), "12GB" (decimal: KB, MB, GB,
// TB), "1.5GiB", "4096" (bytes); case-insensitive. `what` names the option in errors.
uint64_t parse_size(std::string_view text, std::string_view what);
// "11.25 GiB", "512.0 MiB", "900 B".
std::string format_size(uint64_t bytes);

}  // namespace tandem::plan
