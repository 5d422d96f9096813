#include "model/hparams.h"

#include "core/error.h"

namespace tandem::model {
namespace {

// Integer keys come in any GGUF integer width; llama.cpp reads them tolerantly too.
int64_t read_int(const gguf::File& f, const std::string& key) {
  return static_cast<int64_t>(f.get_uint(key));
}

int64_t read_int_or(const gguf::File& f, const std::string& key, int64_t fallback) {
  return f.contains(key) ? read_int(f, key) : fallback;
}

float read_float_or(const gguf::File& f, const std::string& key, float fallback) {
  return f.contains(key) ? static_cast<float>(f.get_float(key)) : fallback;
}

}  // namespace

HParams HParams::from_gguf(const gguf::ModelFiles& files) {
  const gguf::File& f = files.primary();
  HParams hp;
  hp.arch = std::string(f.architecture());
  const std::string a = hp.arch + ".";
  hp.n_ctx_train = read_int(f, a + "context_length");
  hp.n_embd = read_int(f, a + "embedding_length");
  hp.n_layer = read_int(f, a + "block_count");
  hp.n_head = read_int(f, a + "attention.head_count");
  hp.n_head_kv = read_int_or(f, a + "attention.head_count_kv", hp.n_head);
  hp.head_dim = read_int_or(f, a + "attention.key_length", hp.n_head > 0 ? hp.n_embd / hp.n_head : 0);
  hp.n_rot = read_int_or(f, a + "rope.dimension_count", hp.head_dim);
  hp.n_ff = read_int_or(f, a + "feed_forward_length", 0);
  hp.rope_freq_base = read_float_or(f, a + "rope.freq_base", 10000.0f);
  hp.rms_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon"));
  hp.n_expert = read_int_or(f, a + "expert_count", 0);
  hp.n_expert_used = read_int_or(f, a + "expert_used_count", 0);
  hp.n_ff_expert = read_int_or(f, a + "expert_feed_forward_length",
                               hp.n_expert_used > 0 ? hp.n_ff / hp.n_expert_used : 0);

  hp.n_ff_shared = read_int_or(f, a + "expert_shared_feed_forward_length", hp.n_ff);
  if (hp.arch == "qwen35" || hp.arch == "qwen35moe") {
    hp.n_nextn = read_int_or(f, a + "nextn_predict_layers", 0);
    hp.n_layer = read_int(f, a + "block_count") - hp.n_nextn;
    hp.full_attention_interval = read_int_or(f, a + "full_attention_interval", 4);
    hp.ssm_conv_kernel = read_int(f, a + "ssm.conv_kernel");
    hp.ssm_n_k = read_int(f, a + "ssm.group_count");
    hp.ssm_n_v = read_int(f, a + "ssm.time_step_rank");
    hp.ssm_d_k = read_int(f, a + "ssm.state_size");
    const int64_t inner = read_int(f, a + "ssm.inner_size");
    if (hp.ssm_n_v <= 0 || hp.ssm_n_k <= 0 || inner % hp.ssm_n_v != 0 || hp.ssm_n_v % hp.ssm_n_k != 0 ||
        hp.ssm_conv_kernel < 2 || hp.full_attention_interval <= 0) {
      fail("{}: inconsistent DeltaNet metadata (inner_size {}, time_step_rank {}, group_count {}, "
           "conv_kernel {}, full_attention_interval {})", f.name(), inner, hp.ssm_n_v, hp.ssm_n_k,
           hp.ssm_conv_kernel, hp.full_attention_interval);
    }
    hp.ssm_d_v = inner / hp.ssm_n_v;
  }
  const gguf::TensorInfo* embd = files.find_tensor("token_embd.weight");
  if (embd == nullptr || embd->dims.size() != 2) {
    fail("{}: required tensor 'token_embd.weight' is missing or not 2-D", f.name());
  }
  hp.n_vocab = embd->dims[1];

  if (hp.n_embd <= 0 || hp.n_layer <= 0 || hp.n_head <= 0 || hp.head_dim <= 0) {
    fail("{}: implausible hyper-parameters (embedding_length {}, layers {}, heads {}, head dim {})",
         f.name(), hp.n_embd, hp.n_layer, hp.n_head, hp.head_dim);
  }
  if (hp.n_head_kv <= 0 || hp.n_head % hp.n_head_kv != 0) {
    fail("{}: {} query heads cannot share {} key/value heads evenly", f.name(), hp.n_head, hp.n_head_kv);
  }
  if (hp.n_rot <= 0 || hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0) {
    fail("{}: rope.dimension_count {} is invalid for head dim {}", f.name(), hp.n_rot, hp.head_dim);
  }
  if (hp.n_expert_used > hp.n_expert) {
    fail("{}: expert_used_count {} exceeds expert_count {}", f.name(), hp.n_expert_used, hp.n_expert);
  }
  return hp;
}

}  // namespace tandem::model
