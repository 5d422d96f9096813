// KV cache types (-ctk/-ctv): each is compared with an f32 cache on the fixture models over
// their longest sequence (150 tokens); the bounds reflect each type's rounding (f16 keeps
// 11 significant bits, q8_0 ~8, q4_0 ~4 per 32-element block; these random tiny models
// are sensitive: q4_0 moves their logits by up to ~1.6). Unsupported types and head
// sizes that do not fit a type's block are clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/model.h"
#include "backend/cpu/cpu_backend.h"
#include "runtime/session.h"

namespace tandem::model {
namespace {

const std::filesystem::path kFixtures = std::filesystem::path(TANDEM_SOURCE_DIR) / "tests" / "fixtures";

std::vector<int32_t> longest_sequence(const std::string& family) {
  std::ifstream in(kFixtures / "manifest.json");
  const auto m = nlohmann::json::parse(in);
  std::vector<int32_t> best;
  for (const auto& seq : m["families"][family]["variants"]["f32"]["sequences"]) {
    auto t = seq["tokens"].get<std::vector<int32_t>>();
    if (t.size() > best.size()) best = t;
  }
  return best;
}

std::vector<float> run(const Model& model, cpu::OpContext& ctx, const std::vector<int32_t>& tokens, KvCacheTypes kv) {
  cpu::CpuBackend session_cpu(ctx);
  runtime::Session session(model, model::Backends{&session_cpu, nullptr}, 256, 32, kv);
  return session.feed_all_logits(tokens);
}

struct Bound {
  DType k, v;
  float max_diff;
};

TEST(KvCache, QuantizedCachesStayCloseToF32) {
  for (const std::string family : {"qwen3", "qwen35moe"}) {
    const auto files = gguf::ModelFiles::open(kFixtures / family / "model-f32.gguf");
    const auto model = load_model(files);
    cpu::OpContext ctx(2, model->max_row());
    const auto tokens = longest_sequence(family);
    const std::vector<float> ref = run(*model, ctx, tokens, {DType::F32, DType::F32});
    std::vector<float> worst_of;
    for (const Bound& b : {Bound{DType::F16, DType::F16, 0.01f}, Bound{DType::BF16, DType::BF16, 0.1f},
                           Bound{DType::Q8_0, DType::Q8_0, 0.1f}, Bound{DType::Q8_0, DType::F16, 0.1f},
                           Bound{DType::Q4_0, DType::Q4_0, 2.0f}}) {
      const std::vector<float> got = run(*model, ctx, tokens, {b.k, b.v});
      ASSERT_EQ(got.size(), ref.size());
      float worst = 0;
      for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - ref[i]));
      std::printf("%s k=%s v=%s: max |logit diff| vs f32 cache %.3g\n", family.c_str(),
                  std::string(dtype_name(b.k)).c_str(), std::string(dtype_name(b.v)).c_str(), worst);
      EXPECT_LE(worst, b.max_diff) << family << " " << dtype_name(b.k) << "/" << dtype_name(b.v);
      EXPECT_GT(worst, 0.0f) << "the cache type made no difference: is it used?";
      worst_of.push_back(worst);
    }
    // Fewer bits, larger error: f16 < q8_0 < q4_0.
    EXPECT_LT(worst_of[0], worst_of[2]) << family;
    EXPECT_LT(worst_of[2], worst_of[4]) << family;
  }
}

TEST(KvCache, HeadSizeMustFitTheBlock) {
  // qwen2's fixture has 16-dim heads: q8_0 (32-element blocks) cannot hold them.
  const auto files = gguf::ModelFiles::open(kFixtures / "qwen2" / "model-f32.gguf");
  const auto model = load_model(files);
  cpu::OpContext ctx(1, model->max_row());
  cpu::CpuBackend cpu(ctx);
  const Backends be{&cpu};
  try {
    model->new_sequence(be, 64, {DType::Q8_0, DType::F16});
    FAIL() << "q8_0 cache accepted for 16-dim heads";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("KV cache type Q8_0 needs a head size that is a multiple of 32 (this model's is 16)"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(model->new_sequence(be, 64, {DType::Q4_K, DType::F16}), Error);
  EXPECT_NO_THROW(model->new_sequence(be, 64, {DType::F16, DType::BF16}));
}

TEST(KvCache, ParsesLlamaCppNames) {
  EXPECT_EQ(parse_kv_cache_type("f32", "-ctk"), DType::F32);
  EXPECT_EQ(parse_kv_cache_type("f16", "-ctk"), DType::F16);
  EXPECT_EQ(parse_kv_cache_type("bf16", "-ctk"), DType::BF16);
  EXPECT_EQ(parse_kv_cache_type("q8_0", "-ctv"), DType::Q8_0);
  EXPECT_EQ(parse_kv_cache_type("q4_0", "-ctv"), DType::Q4_0);
  try {
    parse_kv_cache_type("q9_0", "-ctk");
    FAIL() << "q9_0 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-ctk: unknown KV cache type 'q9_0' (use f32, f16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem::model
