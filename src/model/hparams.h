// Hyper-parameters of a model, read from GGUF metadata (`<arch>.*` keys, llama.cpp's
// spellings), with llama.cpp's defaults where a key is optional.
#pragma once

#include <cstdint>
#include <string>

#include "gguf/gguf_model_files.h"

namespace tandem::model {

struct HParams {
  std::string arch;          // general.architecture
  int64_t n_ctx_train = 0;   // context_length: the training context
  int64_t n_embd = 0;        // D, the residual width
  int64_t n_layer = 0;       // trunk layers (block_count minus MTP blocks)
  int64_t n_head = 0;        // H, query heads
  int64_t n_head_kv = 0;     // H_kv, key/value heads
  int64_t head_dim = 0;      // d, from attention.key_length (D/H is wrong for some models)
  int64_t n_rot = 0;         // rotary dims per head (rope.dimension_count)
  int64_t n_ff = 0;          // F, dense FFN width
  int64_t n_vocab = 0;       // rows of token_embd
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-6f;
  // Mixture of experts (qwen3moe).
  int64_t n_expert = 0;      // E
  int64_t n_expert_used = 0; // k
  int64_t n_ff_expert = 0;   // F_e
  int64_t n_ff_shared = 0;   // F_s, shared expert width (qwen35moe)
  // Hybrid Qwen3.5 (qwen35, qwen35moe): Gated DeltaNet layers between full-attention ones.
  int64_t n_nextn = 0;                  // MTP blocks appended after the trunk
  int64_t full_attention_interval = 0;  // layer i is full attention iff (i+1) % interval == 0
  int64_t ssm_conv_kernel = 0;          // K_c
  int64_t ssm_n_k = 0;                  // key heads (ssm.group_count)
  int64_t ssm_n_v = 0;                  // value heads (ssm.time_step_rank)
  int64_t ssm_d_k = 0;                  // key head dim (ssm.state_size)
  int64_t ssm_d_v = 0;                  // value head dim (ssm.inner_size / n_v)

  bool is_hybrid() const { return full_attention_interval > 0; }
  bool is_full_attention(int64_t layer) const {
    return !is_hybrid() || (layer + 1) % full_attention_interval == 0;
  }

  // Reads every key the architecture needs; missing required keys are errors naming them.
  // n_vocab is the row count of token_embd.weight.
  static HParams from_gguf(const gguf::ModelFiles& files);
};

}  // namespace tandem::model
