// KV cache types (-ctk/-ctv): each is compared with an f32 cache on the fixture models over
// their longest sequence (150 tokens); the bounds reflect each type's rounding (f16 keeps
// 11 significant bits, q8_0 ~8, q4_0 ~4 per 32-element block; these random tiny models
// are sensitive: q4_0 moves their logits by up to ~1.6). Every type is also compared with
// llama.cpp run with the same cache (QuantizedCachesMatchLlamaCpp). Unsupported types and
// head sizes that do not fit a type's block are clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/model.h"
#include "model/tiny_model.h"
#include "backend/cpu/cpu_backend.h"
#include "runtime/session.h"
#include "support/test_support.h"

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

// Each cache type against llama.cpp run with the same -ctk/-ctv on the same f32 fixture
// (tools/crosscheck/llama_fixture_logits.py --kv-caches; f32 weights, so both take their float
// matmuls and only the cache differs). M = mean |llama.cpp(type) - llama.cpp(f16)| is how far
// that type's rounding moves llama.cpp's own logits (for q8_0/q8_0: its f16-vs-q8_0 spread).
//  - tandem's rounding moves its logits as far: mean |tandem(type) - tandem(f16)| in
//    [0.4 M, 2.5 M] (a type stored as another, or not quantized at all, leaves this range);
//  - tandem sits near llama.cpp: mean |tandem(type) - llama.cpp(type)| <= a per-family
//    fraction of M. Both fixtures have heads of several blocks (qwen3 128-dim: four;
//    qwen35moe 64-dim: two) and sit 1.2-1.6 M away for the quantized types (about sqrt(2) M:
//    the two roundings are uncorrelated; bf16 0.6 M) although an f16 cache agrees to 4e-6 --
//    unexplained so far. When qwen3's heads were 32-dim (one block per head) it agreed to
//    0.11-0.21 M on the 4- and 5-bit types, so the split of a head into blocks is where to
//    look. The bounds (qwen3 1.6 M / 1.8 M, qwen35moe 1.7 M) only catch gross errors; the
//    [0.4 M, 2.5 M] range on tandem's own move is the sharper check.
//  - f16 (no block structure): within 1e-4 of llama.cpp.
struct KvAgreement {
  const char* family;
  double fine, coarse;  // max mean |tandem - llama.cpp| / M: 8-bit types and bf16; 4- and 5-bit types
};
constexpr KvAgreement kKvAgreement[] = {{"qwen3", 1.6, 1.8}, {"qwen35moe", 1.7, 1.7}};

double mean_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += std::fabs(static_cast<double>(a[i]) - b[i]);
  return sum / static_cast<double>(a.size());
}

TEST(KvCache, QuantizedCachesMatchLlamaCpp) {
  std::ifstream in(kFixtures / "manifest.json");
  const auto m = nlohmann::json::parse(in);
  for (const KvAgreement& bound : kKvAgreement) {
    const std::string family = bound.family;
    const auto& v = m["families"][family]["variants"]["f32"];
    ASSERT_TRUE(v.contains("llama_kv_references")) << family;
    const auto& refs = v["llama_kv_references"];
    const auto files = gguf::ModelFiles::open(kFixtures / family / "model-f32.gguf");
    const auto model = load_model(files);
    cpu::OpContext ctx(2, model->max_row());
    const auto tokens = v["sequences"][refs["f16/f16"]["sequence"].get<size_t>()]["tokens"].get<std::vector<int32_t>>();
    const std::vector<float> llama_f16 = testing::read_floats(kFixtures / refs["f16/f16"]["file"].get<std::string>());
    const std::vector<float> ours_f16 = run(*model, ctx, tokens, {DType::F16, DType::F16});
    ASSERT_EQ(ours_f16.size(), llama_f16.size()) << family;
    EXPECT_LE(mean_abs_diff(ours_f16, llama_f16), 1e-4) << family << " f16/f16";
    int checked = 0;
    for (const auto& [pair, ref] : refs.items()) {
      if (pair == "f16/f16") continue;
      const size_t slash = pair.find('/');
      const DType k = parse_kv_cache_type(pair.substr(0, slash), "-ctk"), vt = parse_kv_cache_type(pair.substr(slash + 1), "-ctv");
      const std::vector<float> llama = testing::read_floats(kFixtures / ref["file"].get<std::string>());
      const std::vector<float> ours = run(*model, ctx, tokens, {k, vt});
      ASSERT_EQ(ours.size(), llama.size()) << family << " " << pair;
      const double moved = mean_abs_diff(llama, llama_f16), ours_moved = mean_abs_diff(ours, ours_f16),
                   apart = mean_abs_diff(ours, llama);
      const bool coarse = dtype_info(k).block_bytes * 8 < 7 * dtype_info(k).block_elems ||
                          dtype_info(vt).block_bytes * 8 < 7 * dtype_info(vt).block_elems;  // the 4- and 5-bit types
      const double max_apart = (coarse ? bound.coarse : bound.fine) * moved;
      std::printf("%s %s: tandem vs llama.cpp %.3g = %.2f M (bound %.2f M); M = llama.cpp vs its f16 cache %.3g; "
                  "tandem vs its f16 cache %.2f M\n", family.c_str(), pair.c_str(), apart, apart / moved,
                  max_apart / moved, moved, ours_moved / moved);
      EXPECT_GT(moved, 0.0) << family << " " << pair << ": llama.cpp's reference did not use the cache type";
      EXPECT_GE(ours_moved, 0.4 * moved) << family << " " << pair << ": the cache rounds less than llama.cpp's";
      EXPECT_LE(ours_moved, 2.5 * moved) << family << " " << pair << ": the cache rounds more than llama.cpp's";
      EXPECT_LE(apart, max_apart) << family << " " << pair;
      ++checked;
    }
    EXPECT_EQ(checked, 7) << family << ": bf16, q8_0, q8_0/f16, q4_0, q4_1, q5_0, q5_1";
  }
}

TEST(KvCache, HeadSizeMustFitTheBlock) {
  // 16-dim heads (the fixtures' are real sizes, 64/128): q8_0 (32-element blocks) cannot hold them.
  testing::TinySpec spec;
  spec.arch = "qwen2";
  spec.head_dim = 16;
  const auto path = testing::scratch_dir("kv_cache_head16") / "m.gguf";
  testing::write_tiny_model(path, spec);
  const auto files = gguf::ModelFiles::open(path);
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
