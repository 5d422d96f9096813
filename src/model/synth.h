// Random-weight GGUF files with a real model's shapes, so speed can be measured without
// downloading the model. Tensor names, shapes, metadata keys and the quantization mix follow
// what llama.cpp's converter + llama-quantize write, so llama.cpp loads the same file.
//
// Weights are random but numerically sane: matrices have std ~ 1/sqrt(fan_in) (quantized
// blocks are generated directly, never quantized from floats), norms are 1, DeltaNet decay
// parameters and conv taps sit in plausible ranges and the routers spread tokens over experts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "model/hparams.h"

namespace tandem::model::synth {

// One architecture's hyper-parameters, as its GGUF metadata states them.
struct Preset {
  std::string name;             // "qwen35moe-35b-a3b"
  std::string arch;             // general.architecture: qwen2 | qwen3 | qwen3moe | qwen35moe
  std::string about;            // one line for the preset list
  int64_t n_layer = 0;
  int64_t n_nextn = 0;          // MTP (NextN) blocks after the trunk (qwen35moe: 0 or 1)
  int64_t n_embd = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_rot = 0;            // rotary dims; 0: head_dim (and the key is not written)
  int64_t n_ff = 0;             // feed_forward_length; 0: not written (qwen35moe)
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-6f;
  bool tied_embeddings = false;  // no output.weight
  bool qkv_bias = false;         // qwen2
  // Mixture of experts (qwen3moe, qwen35moe).
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_expert = 0;
  int64_t n_ff_shared = 0;       // qwen35moe shared expert
  // Hybrid Qwen3.5: Gated DeltaNet layers, full attention every full_attention_interval-th.
  int64_t full_attention_interval = 0;
  int64_t ssm_conv_kernel = 0;
  int64_t ssm_n_k = 0;           // ssm.group_count
  int64_t ssm_n_v = 0;           // ssm.time_step_rank
  int64_t ssm_d_state = 0;       // ssm.state_size (= d_k = d_v)
  std::vector<int32_t> rope_sections;
};

const std::vector<Preset>& presets();
// Fails with the list of valid names when `name` is unknown.
const Preset& find_preset(std::string_view name);

// A llama-quantize file type: general.file_type and the default type of matrices.
struct FileType {
  std::string_view name;  // "q4_k_m"
  uint32_t id;            // llama_ftype
  DType base;
};
const std::vector<FileType>& file_types();
// Accepts llama-quantize's spellings (case-insensitive, "q4_k" = "q4_k_m"); fails listing
// the valid ones.
const FileType& find_file_type(std::string_view name);

// What a tensor's values are.
enum class Fill { kOnes, kRandom, kSsmA, kDtBias };

struct PlannedTensor {
  std::string name;
  std::vector<int64_t> dims;  // ggml order
  DType type;
  Fill fill = Fill::kRandom;
  float scale = 0.0f;         // std of the effective weights (kRandom)

  uint64_t bytes() const;     // size of its data in the file
};

// Every tensor of the file in llama-quantize's order, with the types its mix gives. The
// writer writes exactly these; the planner (plan/) reads them to plan a preset without a file.
std::vector<PlannedTensor> plan_tensors(const Preset& preset, const FileType& type);

// The hyper-parameters a loader reads back from the preset's file (HParams::from_gguf).
HParams hparams(const Preset& preset);

struct Options {
  Preset preset;                   // layers already shrunk, see with_layers()
  std::string type = "q4_k_m";
  uint64_t seed = 1;
  std::filesystem::path vocab_from;  // empty: a synthetic byte-level BPE vocabulary
  // Called now and then while tensor data is written.
  std::function<void(uint64_t done_bytes, uint64_t total_bytes)> progress;
};

// The preset with its first `n_layer` layers; fails when n_layer is out of range (hybrid
// presets need at least one full-attention layer, i.e. full_attention_interval layers).
Preset with_layers(const Preset& preset, int64_t n_layer);

struct Summary {
  size_t n_tensors = 0;
  uint64_t file_bytes = 0;
  int64_t n_vocab_tokens = 0;             // token list length (= embedding rows)
  std::map<std::string, size_t> types;    // tensor count per type name
};

// Writes the file (streamed; memory use is a few MiB). A failed write removes the
// partial file.
Summary write(const std::filesystem::path& out, const Options& options);

}  // namespace tandem::model::synth
