// Several sequences in one forward pass give exactly the logits each gives alone, for the
// prompt and for decode steps, dense and MoE; micro-batch size does not change results.
#include <gtest/gtest.h>

#include <cmath>

#include "model/model.h"
#include "model/tiny_model.h"
#include "backend/cpu/cpu_backend.h"
#include "runtime/session.h"
#include "support/test_support.h"

namespace tandem::model {
namespace {

// f32 cache: an f16 cache would round tiny summation-order differences (batched tokens go
// through the 4-column kernels) into visible steps; batching logic is what is tested here.
constexpr KvCacheTypes kF32Cache{DType::F32, DType::F32};

float max_abs_diff(const float* a, const float* b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class BatchTest : public ::testing::TestWithParam<const char*> {};

// A tiny model per architecture: written here for the classic decoders, the transformers
// fixture for the hybrid Qwen3.5 ones (their recurrent state is per sequence too).
std::filesystem::path model_for(const std::string& arch) {
  if (arch.rfind("qwen35", 0) == 0) {
    return std::filesystem::path(TANDEM_SOURCE_DIR) / "tests" / "fixtures" / arch / "model-f32.gguf";
  }
  const auto path = testing::scratch_dir("batch_" + arch) / "m.gguf";
  testing::TinySpec spec;
  spec.arch = arch;
  testing::write_tiny_model(path, spec);
  return path;
}

TEST_P(BatchTest, BatchEqualsAlone) {
  const auto path = model_for(GetParam());
  const auto files = gguf::ModelFiles::open(path);
  const auto model = load_model(files);
  const int64_t V = model->hparams().n_vocab;
  cpu::OpContext ctx(2, model->max_row());
  // Lengths around the 16-token switch between the recurrent and chunked DeltaNet paths.
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 5, 9, 77, 3}, {100, 2}, {42, 42, 42, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21}};

  // Each alone: prompt, then two decode steps with fixed tokens.
  std::vector<std::vector<float>> alone;
  for (const auto& p : prompts) {
    cpu::CpuBackend s_cpu(ctx);
    runtime::Session s(*model, model::Backends{&s_cpu, nullptr}, 64, 3, kF32Cache);  // micro-batch 3 splits the prompts
    auto l = s.feed(p);
    alone.emplace_back(l.begin(), l.end());
    for (int32_t t : {11, 12}) {
      l = s.feed(std::span<const int32_t>(&t, 1));
      alone.emplace_back(l.begin(), l.end());
    }
  }
  // Together: one call for all prompts, then one call per decode step for all three.
  cpu::CpuBackend cpu(ctx);
  const Backends be{&cpu};
  auto ws = model->new_workspace(be, 32);
  std::vector<std::unique_ptr<SequenceState>> seqs;
  std::vector<std::vector<float>> logits(prompts.size(), std::vector<float>(static_cast<size_t>(V)));
  std::vector<SequenceInput> batch(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    seqs.push_back(model->new_sequence(be, 64, kF32Cache));
    batch[i] = {seqs[i].get(), prompts[i], logits[i].data(), false};
  }
  model->forward(be, *ws, batch);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_LT(max_abs_diff(logits[i].data(), alone[i * 3].data(), V), 1e-4f) << "prompt of sequence " << i;
  }
  const int32_t steps[2] = {11, 12};
  for (int step = 0; step < 2; ++step) {
    for (size_t i = 0; i < prompts.size(); ++i) batch[i].tokens = std::span<const int32_t>(&steps[step], 1);
    model->forward(be, *ws, batch);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_LT(max_abs_diff(logits[i].data(), alone[i * 3 + 1 + step].data(), V), 1e-4f)
          << "step " << step << " of sequence " << i;
    }
  }
  // Logits are not flat (the test would be weak otherwise).
  const auto [lo, hi] = std::minmax_element(alone[0].begin(), alone[0].end());
  EXPECT_GT(*hi - *lo, 0.5f);
}

INSTANTIATE_TEST_SUITE_P(Archs, BatchTest, ::testing::Values("qwen2", "qwen3", "qwen3moe", "qwen35", "qwen35moe"));

TEST(Session, ContextOverflowIsAClearErrorAndChangesNothing) {
  const auto path = testing::scratch_dir("session_overflow") / "m.gguf";
  testing::write_tiny_model(path, testing::TinySpec{});
  const auto files = gguf::ModelFiles::open(path);
  const auto model = load_model(files);
  cpu::OpContext ctx(1, model->max_row());
  cpu::CpuBackend s_cpu(ctx);
  runtime::Session s(*model, model::Backends{&s_cpu, nullptr}, 8, 4);
  const std::vector<int32_t> six = {1, 2, 3, 4, 5, 6};
  s.feed(six);
  try {
    s.feed(six);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("6 positions used + 6 new tokens exceed the context of 8"), std::string::npos);
  }
  EXPECT_EQ(s.n_past(), 6);
  const std::vector<int32_t> bad = {1000};
  EXPECT_THROW(s.feed(bad), Error);  // outside the vocabulary
}

}  // namespace
}  // namespace tandem::model
