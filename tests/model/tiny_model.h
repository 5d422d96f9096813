// Writes small random-weight models in llama.cpp's GGUF layout for tests that need a
// model but no reference numbers (loading errors, batch-vs-single consistency).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "gguf/gguf_writer.h"
#include "quant/quantize.h"

namespace tandem::testing {

struct TinySpec {
  std::string arch = "qwen3";  // qwen2 | qwen3 | qwen3moe
  int64_t n_embd = 64, n_layer = 2, n_head = 4, n_head_kv = 2, head_dim = 16, n_ff = 96;
  int64_t n_vocab = 128, n_expert = 4, n_expert_used = 2, n_ff_expert = 32;
  DType matrix_type = DType::F32;  // for 2-D/3-D weights (F32, F16 or Q8_0)
  uint64_t seed = 7;
  // Lets a test break the file: return false to drop a tensor, or change its dims.
  std::function<bool(std::string& name, std::vector<int64_t>& dims)> edit;
};

inline void write_tiny_model(const std::filesystem::path& path, const TinySpec& spec) {
  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Planned {
    std::string name;
    std::vector<int64_t> dims;
    float scale;
    bool is_norm;
  };
  std::vector<Planned> plan;
  const int64_t D = spec.n_embd, q = spec.n_head * spec.head_dim, kv = spec.n_head_kv * spec.head_dim;
  auto add = [&](std::string name, std::vector<int64_t> dims, float scale, bool norm = false) {
    if (spec.edit && !spec.edit(name, dims)) return;
    plan.push_back({std::move(name), std::move(dims), scale, norm});
  };
  const float s_in = 1.0f / std::sqrt(static_cast<float>(D));
  add("token_embd.weight", {D, spec.n_vocab}, 1.0f);
  add("output_norm.weight", {D}, 0.1f, true);
  for (int64_t i = 0; i < spec.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", {D}, 0.1f, true);
    add(p + "ffn_norm.weight", {D}, 0.1f, true);
    add(p + "attn_q.weight", {D, q}, s_in);
    add(p + "attn_k.weight", {D, kv}, s_in);
    add(p + "attn_v.weight", {D, kv}, s_in);
    add(p + "attn_output.weight", {q, D}, 1.0f / std::sqrt(static_cast<float>(q)));
    if (spec.arch == "qwen2") {
      add(p + "attn_q.bias", {q}, 0.1f);
      add(p + "attn_k.bias", {kv}, 0.1f);
      add(p + "attn_v.bias", {kv}, 0.1f);
    } else {
      add(p + "attn_q_norm.weight", {spec.head_dim}, 0.1f, true);
      add(p + "attn_k_norm.weight", {spec.head_dim}, 0.1f, true);
    }
    if (spec.arch == "qwen3moe") {
      add(p + "ffn_gate_inp.weight", {D, spec.n_expert}, s_in);
      add(p + "ffn_gate_exps.weight", {D, spec.n_ff_expert, spec.n_expert}, s_in);
      add(p + "ffn_up_exps.weight", {D, spec.n_ff_expert, spec.n_expert}, s_in);
      add(p + "ffn_down_exps.weight", {spec.n_ff_expert, D, spec.n_expert}, 1.0f / std::sqrt(static_cast<float>(spec.n_ff_expert)));
    } else {
      add(p + "ffn_gate.weight", {D, spec.n_ff}, s_in);
      add(p + "ffn_up.weight", {D, spec.n_ff}, s_in);
      add(p + "ffn_down.weight", {spec.n_ff, D}, 1.0f / std::sqrt(static_cast<float>(spec.n_ff)));
    }
  }

  gguf::Writer w(path);
  const std::string a = spec.arch + ".";
  w.add("general.architecture", gguf::Value(spec.arch));
  w.add(a + "context_length", gguf::Value(uint32_t{512}));
  w.add(a + "embedding_length", gguf::Value(static_cast<uint32_t>(D)));
  w.add(a + "block_count", gguf::Value(static_cast<uint32_t>(spec.n_layer)));
  w.add(a + "feed_forward_length", gguf::Value(static_cast<uint32_t>(spec.n_ff)));
  w.add(a + "attention.head_count", gguf::Value(static_cast<uint32_t>(spec.n_head)));
  w.add(a + "attention.head_count_kv", gguf::Value(static_cast<uint32_t>(spec.n_head_kv)));
  w.add(a + "attention.key_length", gguf::Value(static_cast<uint32_t>(spec.head_dim)));
  w.add(a + "attention.value_length", gguf::Value(static_cast<uint32_t>(spec.head_dim)));
  w.add(a + "rope.freq_base", gguf::Value(10000.0f));
  w.add(a + "attention.layer_norm_rms_epsilon", gguf::Value(1e-6f));
  if (spec.arch == "qwen3moe") {
    w.add(a + "expert_count", gguf::Value(static_cast<uint32_t>(spec.n_expert)));
    w.add(a + "expert_used_count", gguf::Value(static_cast<uint32_t>(spec.n_expert_used)));
    w.add(a + "expert_feed_forward_length", gguf::Value(static_cast<uint32_t>(spec.n_ff_expert)));
  }
  std::vector<DType> types;
  for (const Planned& t : plan) {
    const DType type = t.dims.size() >= 2 ? spec.matrix_type : DType::F32;
    types.push_back(type);
    w.add_tensor(t.name, type, t.dims);
  }
  w.write_header();
  for (size_t i = 0; i < plan.size(); ++i) {
    const Planned& t = plan[i];
    int64_t n = 1;
    for (int64_t d : t.dims) n *= d;
    std::vector<float> values(static_cast<size_t>(n));
    for (float& v : values) v = (t.is_norm ? 1.0f : 0.0f) + t.scale * normal(rng);
    std::vector<uint8_t> bytes(static_cast<size_t>(n / dtype_info(types[i]).block_elems) * dtype_info(types[i]).block_bytes);
    quant::quantize_row(types[i], values.data(), bytes.data(), n);
    w.write_tensor_data(bytes);
  }
  w.finish();
}

}  // namespace tandem::testing
