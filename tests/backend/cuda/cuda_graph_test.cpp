// Decode graphs (backend/cuda/graph_segments.h): the bookkeeping without a device — which
// segments of which passes are captured — and, on a device, that replayed graphs give the
// same logits, bit for bit, as the same kernels launched one by one (all-GPU and hybrid).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/graph_segments.h"
#include "cuda_test_support.h"
#include "model/model.h"
#include "backend/cpu/cpu_backend.h"
#include "runtime/session.h"

namespace tandem::cuda {
namespace {

// One pass of `tokens` with `segments` segments; returns how many were captured.
int run_pass(GraphSegments& g, int64_t tokens, int segments) {
  int captured = 0;
  g.begin_pass(tokens);
  for (int s = 0; s < segments; ++s) {
    if (g.should_capture()) g.capturing();
    EXPECT_FALSE(g.should_capture()) << "a segment being captured is not captured again";
    captured += g.end_segment().captured ? 1 : 0;
  }
  return captured;
}

TEST(GraphSegments, DecodePassesAreCapturedFromTheirSecondTime) {
  GraphSegments g(true);
  EXPECT_EQ(run_pass(g, 1, 3), 0);  // first time: eager (uploads, scratch sizing)
  EXPECT_EQ(run_pass(g, 1, 3), 3);
  EXPECT_EQ(run_pass(g, 1, 3), 3);
  EXPECT_EQ(run_pass(g, 4, 3), 0);  // another batch size is another key
  EXPECT_EQ(run_pass(g, 4, 3), 3);
  EXPECT_EQ(run_pass(g, 1, 5), 3);  // a segment index never seen runs eagerly first
  EXPECT_EQ(run_pass(g, 1, 5), 5);
}

TEST(GraphSegments, PromptPassesAndDisabledGraphsRunEagerly) {
  GraphSegments g(true);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run_pass(g, GraphSegments::kMaxTokens + 1, 2), 0);
  GraphSegments off(false);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run_pass(off, 1, 2), 0);
  g.disable();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run_pass(g, 1, 2), 0);
}

TEST(GraphSegments, KeysNameTheBatchAndTheSegment) {
  GraphSegments g(true);
  g.begin_pass(3);
  const uint64_t first = g.key();
  const GraphSegments::Ended e = g.end_segment();
  EXPECT_EQ(e.key, first);
  EXPECT_NE(g.key(), first);
  g.begin_pass(3);
  EXPECT_EQ(g.key(), first);
}

std::vector<float> decode(const model::Model& m, cpu::OpContext& ctx, CudaBackend& gpu, int steps) {
  cpu::CpuBackend session_cpu(ctx);
  runtime::Session session(m, model::Backends{&session_cpu, &gpu}, 64, 16, {DType::F16, DType::F16});
  const std::vector<int32_t> prompt = {3, 17, 42, 5, 9, 11};
  std::vector<float> out;
  auto l = session.feed(prompt);
  for (int i = 0; i < steps; ++i) {
    const int32_t t = (7 * i + 4) % 30;
    l = session.feed(std::span<const int32_t>(&t, 1));
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

TEST(CudaGraphs, ReplayedDecodeMatchesLaunchByLaunch) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  const char* root = std::getenv("TANDEM_SOURCE_DIR");
  const auto path = std::filesystem::path(root != nullptr ? root : TANDEM_SOURCE_DIR) / "tests" / "fixtures" /
                    "qwen35moe" / "model-f32.gguf";
  const auto files = gguf::ModelFiles::open(path);
  auto m = model::load_model(files);
  const int64_t L = m->hparams().n_layer;
  cpu::OpContext ctx(2, m->max_row());
  for (const Device experts : {Device::Cuda, Device::Cpu}) {
    SCOPED_TRACE(experts == Device::Cuda ? "all on the GPU" : "routed experts on the CPU");
    m->set_placement(std::vector<model::LayerPlacement>(L, {Device::Cuda, experts}), Device::Cuda);
    CudaBackend eager, graphed;
    eager.set_graphs(false);
    graphed.set_graphs(true);
    const std::vector<float> a = decode(*m, ctx, eager, 8), b = decode(*m, ctx, graphed, 8);
    EXPECT_EQ(eager.graph_launches(), 0u);
    EXPECT_GT(graphed.graph_launches(), 0u) << "decode steps after the first must replay graphs";
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(a, b) << "the same kernels, replayed, must give the same bits";
    std::printf("[ measured ] %s: %llu graph launches over 8 decode steps\n",
                experts == Device::Cuda ? "all-GPU" : "hybrid",
                static_cast<unsigned long long>(graphed.graph_launches()));
  }
  m->set_placement(std::vector<model::LayerPlacement>(L), Device::Cpu);
}

}  // namespace
}  // namespace tandem::cuda
