// `tandem synth`'s generator: the llama-quantize mix, files tandem loads and runs to finite
// logits, effective weight scales, determinism, vocabularies and clear errors. Shrunken
// copies of the presets keep it fast. (The mix was also checked against llama-quantize
// itself for every file type; that needs the llama.cpp peer, so it is not repeated here.)
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "model/synth.h"
#include "quant/dequantize.h"
#include "backend/cpu/cpu_backend.h"
#include "runtime/session.h"
#include "support/test_support.h"
#include "text/tokenizer.h"

namespace tandem::model::synth {
namespace {

// Qwen3.5-MoE with every dimension a K-quant block wide, 4 layers (layer 3 full attention).
Preset tiny_qwen35moe(int64_t n_layer = 4) {
  Preset p = find_preset("qwen35moe-35b-a3b");
  p.n_layer = n_layer, p.n_embd = 256, p.n_head = 4, p.n_head_kv = 2, p.head_dim = 64, p.n_rot = 16;
  p.n_vocab = 1024, p.n_expert = 16, p.n_expert_used = 4, p.n_ff_expert = 256, p.n_ff_shared = 256;
  p.ssm_n_k = 2, p.ssm_n_v = 4, p.ssm_d_state = 64, p.rope_sections = {3, 3, 2, 0};
  return p;
}

Preset tiny_qwen3moe() {
  Preset p = find_preset("qwen3moe-30b-a3b");
  p.n_layer = 3, p.n_embd = 256, p.n_head = 4, p.n_head_kv = 2, p.head_dim = 64, p.n_ff = 512;
  p.n_vocab = 1024, p.n_expert = 16, p.n_expert_used = 4, p.n_ff_expert = 256;
  return p;
}

// Dense, tied, D = 96: K-quants fall back for most matrices.
Preset tiny_dense(const std::string& name) {
  Preset p = find_preset(name);
  p.n_layer = 3, p.n_embd = 96, p.n_head = 4, p.n_head_kv = 2, p.head_dim = 32, p.n_ff = 256, p.n_vocab = 1024;
  return p;
}

std::map<std::string, DType> types_of(const std::vector<PlannedTensor>& plan) {
  std::map<std::string, DType> m;
  for (const auto& t : plan) m[t.name] = t.type;
  return m;
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(Synth, Q4KMMixFollowsLlamaQuantize) {
  // 8 layers: use_more_bits is true for layers 0, 3, 6, 7.
  const auto t = types_of(plan_tensors(tiny_qwen35moe(8), find_file_type("q4_k_m")));
  EXPECT_EQ(t.at("token_embd.weight"), DType::Q4_K);
  EXPECT_EQ(t.at("output.weight"), DType::Q6_K);
  EXPECT_EQ(t.at("output_norm.weight"), DType::F32);
  for (int i : {0, 3, 6, 7}) {
    const std::string b = "blk." + std::to_string(i) + ".";
    EXPECT_EQ(t.at(b + "ffn_down_exps.weight"), DType::Q6_K) << i;
    EXPECT_EQ(t.at(b + "ffn_down_shexp.weight"), DType::Q6_K) << i;
    EXPECT_EQ(t.at(b + (i == 3 || i == 7 ? "attn_v.weight" : "attn_qkv.weight")), DType::Q6_K) << i;
  }
  EXPECT_EQ(t.at("blk.1.ffn_down_exps.weight"), DType::Q4_K);
  EXPECT_EQ(t.at("blk.1.attn_qkv.weight"), DType::Q4_K);
  EXPECT_EQ(t.at("blk.1.ffn_gate_exps.weight"), DType::Q4_K);
  EXPECT_EQ(t.at("blk.1.ffn_gate_inp.weight"), DType::F32);
  EXPECT_EQ(t.at("blk.1.ffn_gate_inp_shexp.weight"), DType::F32);
  EXPECT_EQ(t.at("blk.1.ssm_conv1d.weight"), DType::F32);
  EXPECT_EQ(t.at("blk.1.ssm_a"), DType::F32);
  EXPECT_EQ(t.at("blk.1.ssm_dt.bias"), DType::F32);
  EXPECT_EQ(t.at("blk.1.ssm_beta.weight"), DType::Q4_K);
  EXPECT_EQ(t.at("blk.1.ssm_out.weight"), DType::Q4_K);
  EXPECT_EQ(t.at("blk.3.attn_q.weight"), DType::Q4_K);
  EXPECT_EQ(t.at("blk.3.attn_k.weight"), DType::Q4_K);
  EXPECT_EQ(t.at("blk.3.attn_output.weight"), DType::Q4_K);
  EXPECT_EQ(t.count("blk.5.attn_k.weight"), 0u);  // DeltaNet layer

  // Exactly 8 experts: attn_v/attn_k Q8_0 and attn_output Q5_K (llama-quantize's Mixtral rule).
  Preset e8 = tiny_qwen3moe();
  e8.n_expert = 8;
  const auto m = types_of(plan_tensors(e8, find_file_type("q4_k")));  // alias of q4_k_m
  EXPECT_EQ(m.at("blk.1.attn_v.weight"), DType::Q8_0);
  EXPECT_EQ(m.at("blk.1.attn_k.weight"), DType::Q8_0);
  EXPECT_EQ(m.at("blk.1.attn_output.weight"), DType::Q5_K);
}

TEST(Synth, RowsThatAreNotBlockMultiplesFallBack) {
  const auto t = types_of(plan_tensors(tiny_dense("qwen3-0.6b"), find_file_type("q4_k_m")));
  EXPECT_EQ(t.count("output.weight"), 0u);                 // tied
  EXPECT_EQ(t.at("token_embd.weight"), DType::Q8_0);       // output role, 96 % 256 != 0
  EXPECT_EQ(t.at("blk.1.attn_q.weight"), DType::Q5_0);     // Q4_K -> Q5_0
  // 3 layers: use_more_bits picks layer 2 only.
  EXPECT_EQ(t.at("blk.0.attn_v.weight"), DType::Q5_0);     // Q4_K -> Q5_0
  EXPECT_EQ(t.at("blk.2.attn_v.weight"), DType::Q8_0);     // Q6_K -> Q8_0
  EXPECT_EQ(t.at("blk.2.ffn_down.weight"), DType::Q6_K);   // rows of 256 keep the K-quant
  EXPECT_EQ(t.at("blk.1.ffn_down.weight"), DType::Q4_K);
  const auto s = types_of(plan_tensors(tiny_dense("qwen3-0.6b"), find_file_type("q5_k_s")));
  EXPECT_EQ(s.at("blk.1.attn_q.weight"), DType::Q5_1);     // Q5_K -> Q5_1
}

class SynthModel : public ::testing::TestWithParam<const char*> {};

Preset preset_for(const std::string& which) {
  if (which == "qwen35moe") return tiny_qwen35moe();
  if (which == "qwen35moe_mtp") {
    Preset p = tiny_qwen35moe();
    p.n_nextn = 1;  // synth --mtp
    return p;
  }
  if (which == "qwen3moe") return tiny_qwen3moe();
  Preset p = tiny_dense(which == "qwen2" ? "qwen2.5-0.5b" : "qwen3-0.6b");
  if (which == "qwen2") p.head_dim = 24;  // qwen2 has no key_length: H * d must be D
  return p;
}

TEST_P(SynthModel, LoadsAndGivesFiniteLogits) {
  const std::string which = GetParam();
  Options o;
  o.preset = preset_for(which);
  o.type = "q4_k_m";
  o.seed = 3;
  const auto path = testing::scratch_dir("synth_" + which) / "m.gguf";
  const Summary summary = write(path, o);
  const auto plan = plan_tensors(o.preset, find_file_type(o.type));

  const auto files = gguf::ModelFiles::open(path);
  const auto& tensors = files.primary().tensors();
  ASSERT_EQ(tensors.size(), plan.size());
  EXPECT_EQ(summary.n_tensors, plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(tensors[i].name, plan[i].name);
    EXPECT_EQ(tensors[i].type, plan[i].type) << plan[i].name;
    EXPECT_EQ(tensors[i].dims, plan[i].dims) << plan[i].name;
  }
  EXPECT_EQ(files.primary().get<uint32_t>("general.file_type"), 15u);

  const auto model = load_model(files);
  EXPECT_TRUE(model->unused_tensors().empty());
  EXPECT_EQ(model->hparams().n_layer, o.preset.n_layer);  // the trunk's, without the MTP block
  EXPECT_EQ(model->has_mtp(), o.preset.n_nextn > 0);
  EXPECT_EQ(model->hparams().n_vocab, o.preset.n_vocab);

  const text::Tokenizer tokenizer = text::Tokenizer::from_gguf(files.primary());
  std::vector<int32_t> tokens = tokenizer.encode("hello world, hello!");
  ASSERT_FALSE(tokens.empty());
  cpu::OpContext ctx(2, model->max_row());
  cpu::CpuBackend session_cpu(ctx);
  runtime::Session session(*model, model::Backends{&session_cpu, nullptr}, 64);
  for (int step = 0; step < 3; ++step) {
    const auto logits = session.feed(tokens);
    double sum = 0, sq = 0;
    for (float l : logits) {
      ASSERT_TRUE(std::isfinite(l));
      sum += l, sq += double(l) * l;
    }
    const double mean = sum / logits.size(), sd = std::sqrt(sq / logits.size() - mean * mean);
    EXPECT_GT(sd, 0.3) << "logits should not be flat";
    EXPECT_LT(sd, 20.0) << "logits should not blow up";
    tokens = {static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, SynthModel, ::testing::Values("qwen35moe", "qwen35moe_mtp", "qwen3moe", "qwen3", "qwen2"));

// Every generated block type decodes to weights with mean ~0 and the planned std.
TEST(Synth, EffectiveWeightsHaveThePlannedScale) {
  Preset p = tiny_qwen3moe();
  p.n_layer = 1;
  for (const char* type : {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k_m", "q5_k_s", "q6_k", "f16", "bf16", "f32"}) {
    Options o;
    o.preset = p;
    o.type = type;
    const auto path = testing::scratch_dir(std::string("synth_scale_") + type) / "m.gguf";
    write(path, o);
    const gguf::File file = gguf::File::open(path);
    for (const PlannedTensor& t : plan_tensors(p, find_file_type(type))) {
      if (t.fill != Fill::kRandom) continue;
      const gguf::TensorInfo* info = file.find_tensor(t.name);
      ASSERT_NE(info, nullptr);
      std::vector<float> v(info->n_elements);
      quant::dequantize_row(info->type, info->data, v.data(), static_cast<int64_t>(v.size()));
      double sum = 0, sq = 0;
      for (float x : v) sum += x, sq += double(x) * x;
      const double mean = sum / v.size(), sd = std::sqrt(sq / v.size() - mean * mean);
      EXPECT_NEAR(sd, t.scale, 0.03 * t.scale) << type << " " << t.name << " " << dtype_name(info->type);
      EXPECT_LT(std::fabs(mean), 0.05 * t.scale) << type << " " << t.name << " " << dtype_name(info->type);
    }
  }
}

TEST(Synth, SameSeedSameFile) {
  Options o;
  o.preset = tiny_qwen35moe(4);
  const auto dir = testing::scratch_dir("synth_seed");
  write(dir / "a.gguf", o);
  write(dir / "b.gguf", o);
  o.seed = 2;
  write(dir / "c.gguf", o);
  EXPECT_EQ(read_bytes(dir / "a.gguf"), read_bytes(dir / "b.gguf"));
  EXPECT_NE(read_bytes(dir / "a.gguf"), read_bytes(dir / "c.gguf"));
}

TEST(Synth, VocabularyFromAnotherFileIsPadded) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  const auto vocab = shared / "data" / "vocab" / "ggml-vocab-gpt-2.gguf";  // 50257 tokens
  Options o;
  o.preset = tiny_dense("qwen3-0.6b");
  o.preset.n_layer = 1;
  o.vocab_from = vocab;
  const auto dir = testing::scratch_dir("synth_vocab");
  try {
    write(dir / "small.gguf", o);
    FAIL() << "a 50257-token vocabulary must not fit 1024 rows";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has 50257 tokens, more than the 1024 embedding rows"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "small.gguf"));

  o.preset.n_vocab = 50304;
  write(dir / "m.gguf", o);
  const auto files = gguf::ModelFiles::open(dir / "m.gguf");
  const gguf::File& f = files.primary();
  const auto& tokens = f.get_array<std::string>("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 50304u);
  EXPECT_EQ(tokens.back(), "[PAD50303]");
  EXPECT_EQ(f.get_array<int32_t>("tokenizer.ggml.token_type").back(), 5);  // UNUSED
  EXPECT_EQ(f.get<std::string>("tokenizer.ggml.pre"), "gpt-2");
  const text::Tokenizer tokenizer = text::Tokenizer::from_gguf(f);
  EXPECT_FALSE(tokenizer.encode("Hello world").empty());
  EXPECT_NO_THROW(load_model(files));
}

TEST(Synth, BadInputIsAClearError) {
  auto message = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(message([] { find_preset("llama-7b"); }).find("unknown preset 'llama-7b' (valid: qwen35moe-35b-a3b"),
            std::string::npos);
  EXPECT_NE(message([] { find_file_type("q3_k_m"); }).find("unknown --type 'q3_k_m'"), std::string::npos);
  EXPECT_EQ(find_file_type("Q4_K_M").name, "q4_k_m");
  const Preset& p = find_preset("qwen35moe-35b-a3b");
  EXPECT_NE(message([&] { with_layers(p, 41); }).find("--layers must be 4..40"), std::string::npos);
  EXPECT_NE(message([&] { with_layers(p, 0); }).find("--layers must be 4..40"), std::string::npos);
  // llama.cpp cannot run a hybrid model without a full-attention layer.
  EXPECT_NE(message([&] { with_layers(p, 3); }).find("--layers must be 4..40"), std::string::npos);
  EXPECT_NE(message([&] { plan_tensors(tiny_qwen35moe(2), find_file_type("q8_0")); }).find("no full-attention"),
            std::string::npos);
  EXPECT_EQ(with_layers(find_preset("qwen3-0.6b"), 1).n_layer, 1);
  EXPECT_EQ(with_layers(p, 8).n_layer, 8);
  EXPECT_EQ(with_layers(p, 8).full_attention_interval, 4);
  Options o;
  o.preset = tiny_qwen35moe();
  EXPECT_NE(message([&] { write("/nonexistent-synth-dir/m.gguf", o); }).find("cannot create"), std::string::npos);
}

}  // namespace
}  // namespace tandem::model::synth
