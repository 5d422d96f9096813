// Placement and hybrid execution without a GPU: a second CPU backend stands in for the
// GPU (Device::Cuda). It owns its memory and checks that every activation, cache and state
// pointer an op hands it lies in memory it allocated, so a block that reads the other
// device's buffer fails even when the bytes would happen to match. Every placement —
// all on the "GPU", routed experts on the CPU (the hybrid MoE split, shared expert on the
// "GPU"), a plain layer split, experts on the "GPU" for a CPU layer — must give the same
// logits as all-CPU, for the prompt and for decode steps (and a speculative rollback), dense
// and MoE, attention and DeltaNet, float and integer expert kernels.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "model/model.h"
#include "runtime/session.h"
#include "mtp_pairs.h"
#include "support/test_support.h"

namespace tandem::model {
namespace {

class StandInGpu final : public Backend {
 public:
  explicit StandInGpu(cpu::OpContext& ctx) : inner_(ctx) {}
  Device device() const override { return Device::Cuda; }
  Memory allocate(size_t bytes) override {
    Memory m = inner_.allocate(bytes);
    if (m.as() != nullptr) owned_.push_back({m.as(), m.as() + bytes});
    return m;
  }
  // Host memory for the CPU side of crossings: not the stand-in's device memory.
  Memory allocate_host(size_t bytes) override { return inner_.allocate(bytes); }
  void zero(void* dst, size_t bytes) override { inner_.zero(mine(dst), bytes); }
  void copy_from_host(void* dst, const void* src, size_t bytes) override { inner_.copy_from_host(mine(dst), src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    works();
    land_queued();
    inner_.copy_to_host(dst, mine(src), bytes);
  }
  // Queued copies land only at the next copy_to_host or finish, as on a GPU at worst: the
  // bytes are taken now (stream order) and the destination holds a poison value until
  // then, so a block that reads it early diverges.
  void copy_to_host_queued(void* dst, const void* src, size_t bytes) override {
    const auto* from = static_cast<const uint8_t*>(mine(src));
    queued_.push_back({dst, std::vector<uint8_t>(from, from + bytes)});
    std::memset(dst, 0x7F, bytes);
    ++queued_copies;
  }
  void finish() override {
    works();
    land_queued();
  }
  void reserve_attention(int64_t t, const AttentionShape& s, bool g) override { inner_.reserve_attention(t, s, g); }
  void reserve_delta_net(int64_t t, const DeltaNetShape& s, int64_t k) override { inner_.reserve_delta_net(t, s, k); }
  void reserve_ffn(int64_t t, int64_t d, const FfnWeights& w) override { inner_.reserve_ffn(t, d, w); }
  void embed(const Tensor& table, std::span<const int32_t> tokens, float* x) override {
    ADD_FAILURE() << "embeddings are looked up on the CPU";
    inner_.embed(table, tokens, mine(x));
  }
  void rms_norm(const float* x, const std::vector<float>& w, int64_t rows, int64_t n, float eps, float* out) override {
    inner_.rms_norm(mine(x), w, rows, n, eps, mine(out));
  }
  void add(float* x, const float* y, int64_t n) override { inner_.add(mine(x), mine(y), n); }
  void attention(const AttentionWeights& w, const AttentionShape& shape, const float* a,
                 std::span<const AttentionSequence> seqs, float* out) override {
    for (const AttentionSequence& s : seqs) mine(s.k.data), mine(s.v.data);
    ++blocks;
    inner_.attention(w, shape, mine(a), seqs, mine(out));
  }
  void delta_net(const DeltaNetWeights& w, const DeltaNetShape& shape, const float* a,
                 std::span<const DeltaNetSequence> seqs, float* out) override {
    for (const DeltaNetSequence& s : seqs) {
      mine(s.conv_state), mine(s.ssm_state);
      if (s.conv_in != nullptr) mine(s.conv_in), mine(s.ssm_in);
      if (s.ssm_first != nullptr) mine(s.ssm_first);
      if (s.record != nullptr) mine_record(*s.record);
    }
    ++blocks;
    inner_.delta_net(w, shape, mine(a), seqs, mine(out));
  }
  void delta_net_rollback(const DeltaNetShape& shape, int64_t conv_kernel, const DeltaNetRollback& r) override {
    mine(r.conv_in), mine(r.ssm_in), mine(r.conv_out), mine(r.ssm_out);
    mine_record(r.record);
    ++rollbacks;
    inner_.delta_net_rollback(shape, conv_kernel, r);
  }
  void dense_ffn(const FfnWeights& w, const float* m, int64_t T, float* out) override {
    ++blocks;
    inner_.dense_ffn(w, mine(m), T, mine(out));
  }
  void moe_route(const FfnWeights& w, const float* m, int64_t T, int32_t* chosen, float* weight) override {
    inner_.moe_route(w, mine(m), T, mine(chosen), mine(weight));
  }
  void moe_experts(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen, const float* weight,
                   float* out) override {
    ++expert_calls;
    inner_.moe_experts(w, mine(m), T, mine(chosen), mine(weight), mine(out));
  }
  // Streaming as a GPU does it: the holder writes the weights' file-layout rows into this
  // device's memory, and the experts run from there. (A GPU reuses one buffer; the
  // stand-in keeps one per weight, because its CPU context finds its interleaved copies by
  // address.)
  bool can_stream_experts() const override { return true; }
  void moe_experts_streamed(const FfnWeights& w, Backend& holder, const float* m, int64_t T, const int32_t* chosen,
                            const float* weight, float* out) override {
    ++streamed_calls;
    FfnWeights here = w;
    for (Tensor* t : {&here.gate_exps, &here.up_exps, &here.down_exps}) {
      Memory& copy = streamed_[t->data];
      if (copy.as() == nullptr) copy = allocate(t->row_bytes() * static_cast<size_t>(t->rows()));
      holder.read_weight_rows(*t, 0, t->rows(), copy.as());
      streamed_bytes += copy.bytes();
      t->data = static_cast<const uint8_t*>(copy.as());
    }
    inner_.moe_experts(here, mine(m), T, mine(chosen), mine(weight), mine(out));
  }
  void shared_expert(const FfnWeights& w, const float* m, int64_t T, float* out) override {
    ++shared_calls;
    inner_.shared_expert(w, mine(m), T, mine(out));
  }
  void logits(const std::vector<float>& norm, float eps, const Tensor& head, const float* x, int64_t rows, int64_t D,
              float* scratch, float* logits) override {
    ++head_calls;
    inner_.logits(norm, eps, head, mine(x), rows, D, mine(scratch), logits);  // logits: host memory
  }

  int blocks = 0, rollbacks = 0, expert_calls = 0, shared_calls = 0, head_calls = 0, streamed_calls = 0, queued_copies = 0;
  size_t streamed_bytes = 0;
  // The GPU "works" this long at each point where the host waits for it (copy_to_host,
  // finish), as the thread that drives a real one does in cudaStreamSynchronize; waited_s
  // sums those waits and others_cpu_s the CPU time every other thread of the process (the
  // CPU pool's workers) used meanwhile.
  std::chrono::milliseconds busy{0};
  double waited_s = 0, others_cpu_s = 0;

 private:
  void works() {
    if (busy.count() == 0) return;
    const double others0 = testing::other_threads_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(busy);
    waited_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    others_cpu_s += testing::other_threads_cpu_seconds() - others0;
  }
  void land_queued() {
    for (const auto& [dst, bytes] : queued_) std::memcpy(dst, bytes.data(), bytes.size());
    queued_.clear();
  }
  template <class T>
  T* mine(T* p) {
    const auto* b = reinterpret_cast<const uint8_t*>(p);
    for (const auto& [lo, hi] : owned_) {
      if (b >= lo && b < hi) return p;
    }
    ADD_FAILURE() << "the stand-in GPU was handed memory it did not allocate";
    return p;
  }
  void mine_record(const DeltaNetRecord& r) { mine(r.P), mine(r.q), mine(r.k), mine(r.v), mine(r.g), mine(r.beta); }
  cpu::CpuBackend inner_;
  std::vector<std::pair<const uint8_t*, const uint8_t*>> owned_;
  std::map<const uint8_t*, Memory> streamed_;  // by the holder's weight address
  std::vector<std::pair<void*, std::vector<uint8_t>>> queued_;  // copies to the host not landed yet
};

constexpr KvCacheTypes kF16Cache{DType::F16, DType::F16};

// Prompt logits, then two decode steps, as one vector. Micro-batch 5: the prompt in pieces
// (decode-sized, <= 8 tokens); 16: one prompt-sized pass (expert streaming).
std::vector<float> run(const Model& model, cpu::OpContext& ctx, Backend* gpu, int64_t n_ubatch = 5) {
  cpu::CpuBackend session_cpu(ctx);
  runtime::Session session(model, model::Backends{&session_cpu, gpu}, 64, n_ubatch, kF16Cache);
  const std::vector<int32_t> prompt = {3, 17, 42, 5, 9, 11, 2, 8, 30, 1, 7, 19, 23};
  std::vector<float> out;
  auto l = session.feed(prompt);
  out.insert(out.end(), l.begin(), l.end());
  for (int32_t t : {4, 12}) {
    l = session.feed(std::span<const int32_t>(&t, 1));
    out.insert(out.end(), l.begin(), l.end());
  }
  // A speculative verify pass cut back to its first token (a recurrent state rebuilt on its
  // layers' devices), then a decode step from there.
  const std::vector<int32_t> guesses = {6, 14, 21};
  const std::vector<float>& rows = session.verify(guesses);
  out.insert(out.end(), rows.begin(), rows.end());
  session.rollback(session.n_past() - 2);
  const int32_t next = 9;
  l = session.feed(std::span<const int32_t>(&next, 1));
  out.insert(out.end(), l.begin(), l.end());
  return out;
}

struct Case {
  const char* family;
  const char* file;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.family << "/" << c.file; }

class PlacementTest : public ::testing::TestWithParam<Case> {};

TEST_P(PlacementTest, EveryPlacementGivesTheAllCpuLogits) {
  const auto path = std::filesystem::path(TANDEM_SOURCE_DIR) / "tests" / "fixtures" / GetParam().family / GetParam().file;
  const auto files = gguf::ModelFiles::open(path);
  auto model = load_model(files);
  const int64_t L = model->hparams().n_layer;
  const bool moe = model->hparams().n_expert > 0;
  cpu::OpContext ctx(2, model->max_row()), gpu_ctx(1, model->max_row());
  const std::vector<float> reference = run(*model, ctx, nullptr);

  const std::vector<float> reference_16 = run(*model, ctx, nullptr, 16);
  struct Named {
    std::string name;
    std::vector<LayerPlacement> layers;
    Device output;
    ExpertStreaming::Mode streaming = ExpertStreaming::Mode::kOff;
  };
  std::vector<Named> placements;
  placements.push_back({"all on the GPU", std::vector<LayerPlacement>(L, {Device::Cuda, Device::Cuda}), Device::Cuda});
  std::vector<LayerPlacement> split(L);
  for (int64_t i = 0; i < L / 2; ++i) split[static_cast<size_t>(i)] = {Device::Cuda, Device::Cuda};
  placements.push_back({"first half of the layers on the GPU", split, Device::Cpu});
  if (moe) {
    placements.push_back({"routed experts on the CPU", std::vector<LayerPlacement>(L, {Device::Cuda, Device::Cpu}), Device::Cuda});
    std::vector<LayerPlacement> mixed(L, {Device::Cuda, Device::Cpu});
    mixed.back() = {Device::Cpu, Device::Cuda};  // experts on the GPU for a CPU layer
    placements.push_back({"mixed", mixed, Device::Cpu});
    // The prompt's experts streamed to the GPU (the CPU unpacks its interleaved copies,
    // made by the reference run), decode steps' experts on the CPU.
    placements.push_back({"routed experts on the CPU, streamed", std::vector<LayerPlacement>(L, {Device::Cuda, Device::Cpu}),
                          Device::Cuda, ExpertStreaming::Mode::kOn});
  }
  for (const Named& p : placements) {
    SCOPED_TRACE(p.name);
    StandInGpu gpu(gpu_ctx);
    model->set_placement(p.layers, p.output);
    model->set_expert_streaming({p.streaming, uint64_t{1} << 20, nullptr});
    const bool streams = p.streaming != ExpertStreaming::Mode::kOff;
    const std::vector<float> got = run(*model, ctx, &gpu, streams ? 16 : 5);
    const std::vector<float>& want = streams ? reference_16 : reference;
    ASSERT_EQ(got.size(), want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]));
    // Same kernels on the same data: equal to the last bit (thread counts differ, results must not).
    EXPECT_EQ(worst, 0.0);
    EXPECT_GT(gpu.blocks, 0) << "nothing ran on the stand-in GPU";
    if (model->hparams().arch.rfind("qwen35", 0) == 0) EXPECT_GT(gpu.rollbacks, 0) << "no rollback ran on the GPU";
    if (streams) {
      EXPECT_EQ(gpu.streamed_calls, L) << "each layer's prompt experts streamed once";
      // The model's one policy got the session's measurements (the next session starts from them).
      ASSERT_NE(model->expert_streaming().policy, nullptr);
      EXPECT_NE(model->expert_streaming().policy->rates().stream_bytes_per_s, ExpertStreaming::prior(1).stream_bytes_per_s);
      EXPECT_EQ(gpu.expert_calls, 0) << "decode steps' experts stay on the CPU";
      EXPECT_GT(gpu.streamed_bytes, 0u);
    } else {
      EXPECT_EQ(gpu.streamed_calls, 0);
    }
    if (p.name == "routed experts on the CPU") {
      EXPECT_EQ(gpu.expert_calls, 0) << "routed experts ran on the GPU";
      EXPECT_GT(gpu.queued_copies, 0) << "the router's choices cross with the input's wait";
      if (std::string(GetParam().family) == "qwen35moe") {
        EXPECT_GT(gpu.shared_calls, 0);
      }
      EXPECT_GT(gpu.head_calls, 0);
    }
    if (p.name == "mixed") {
      EXPECT_GT(gpu.expert_calls, 0);
    }
  }
  model->set_placement(std::vector<LayerPlacement>(L), Device::Cpu);
  model->set_expert_streaming({});
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PlacementTest,
                         ::testing::Values(Case{"qwen2", "model-f32.gguf"}, Case{"qwen3moe", "model-f32.gguf"},
                                           Case{"qwen3moe", "model-q8_0.gguf"}, Case{"qwen35", "model-f32.gguf"},
                                           Case{"qwen35moe", "model-f32.gguf"}, Case{"qwen35moe", "model-q4_k_m.gguf"}),
                         [](const auto& info) {
                           std::string n = std::string(info.param.family) + "_" + info.param.file;
                           for (char& c : n) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

// A hybrid run is driven by one thread: it runs the CPU's ops through the pool and, between
// them, waits for the GPU. While it waits, the pool's workers must not hold the cores
// (the GPU driver's own threads and the next op's caller need them): an idle worker spins
// and yields for at most about a millisecond, then sleeps on a futex. Here the stand-in
// GPU takes 20 ms at each wait, and the other threads' CPU time over those waits must
// stay far below what three spinning workers would use (three times the wait; a loaded
// machine only lowers that, so the check cannot fail for load). The logits stay exact.
TEST(Placement, PoolWorkersSleepWhileTheGpuWorks) {
  const auto files = gguf::ModelFiles::open(std::filesystem::path(TANDEM_SOURCE_DIR) / "tests" / "fixtures" /
                                            "qwen3moe" / "model-q8_0.gguf");
  auto model = load_model(files);
  const int64_t L = model->hparams().n_layer;
  cpu::OpContext ctx(4, model->max_row()), gpu_ctx(1, model->max_row());
  const std::vector<float> reference = run(*model, ctx, nullptr);
  StandInGpu gpu(gpu_ctx);
  gpu.busy = std::chrono::milliseconds(20);
  model->set_placement(std::vector<LayerPlacement>(L, {Device::Cuda, Device::Cpu}), Device::Cuda);
  EXPECT_EQ(run(*model, ctx, &gpu), reference);
  model->set_placement(std::vector<LayerPlacement>(L), Device::Cpu);
  ASSERT_GE(gpu.waited_s, 0.1) << "the hybrid run waited for the GPU fewer than 5 times";
  std::printf("the GPU worked %.3f s; the pool's workers meanwhile used %.4f s of CPU\n", gpu.waited_s, gpu.others_cpu_s);
  EXPECT_LT(gpu.others_cpu_s, 0.3 * gpu.waited_s)
      << "the pool's 3 workers used " << gpu.others_cpu_s << " s of CPU while the GPU worked " << gpu.waited_s << " s";
}

// The MTP block's layer runs where the placement puts it (the planner places it with the
// every-token weights when MTP speculation runs): on the stand-in GPU, with its experts
// there or on the CPU, its draft logits and its output rows (the next guess's input) equal
// the all-CPU ones to the last bit; the stand-in fails any op handed host memory, so a
// crossing left out (the rows back to the CPU for the input part) is caught.
TEST(Placement, MtpBlockOnTheGpuGivesTheAllCpuDraftLogits) {
  const auto files = gguf::ModelFiles::open(std::filesystem::path(TANDEM_SOURCE_DIR) / "tests" / "fixtures" /
                                            "qwen35moe" / "model-f32.gguf");
  auto model = load_model(files);
  ASSERT_TRUE(model->has_mtp());
  const int64_t L = model->hparams().n_layer, V = model->hparams().n_vocab, D = model->hparams().n_embd;
  cpu::OpContext ctx(2, model->max_row()), gpu_ctx(1, model->max_row());
  const std::vector<int32_t> tokens = {3, 17, 42, 5, 9, 11, 2, 8, 30, 1, 7};
  const auto n = static_cast<int64_t>(tokens.size());
  std::vector<float> hidden(static_cast<size_t>(n * D));
  {
    cpu::CpuBackend cpu(ctx);
    const Backends be{&cpu, nullptr};
    const auto trunk = model->new_sequence(be, 64, kF16Cache);
    const auto ws = model->new_workspace(be, n);
    std::vector<float> logits(static_cast<size_t>(V));
    SequenceInput in;
    in.state = trunk.get();
    in.tokens = tokens;
    in.logits = logits.data();
    in.hidden = hidden.data();
    model->forward(be, *ws, std::span<const SequenceInput>(&in, 1));
  }
  // Pairs (h_p, x_{p+1}) in two calls (a prompt, then one guess), logits and output rows.
  auto draft = [&](Backend* gpu) {
    cpu::CpuBackend cpu(ctx);
    const Backends be{&cpu, gpu};
    const auto cache = model->new_mtp_sequence(be, 64, kF16Cache);
    const auto ws = model->new_workspace(be, n);
    std::vector<float> out(static_cast<size_t>((n - 1) * (V + D)));
    for (auto [from, count] : {std::pair<int64_t, int64_t>{0, n - 2}, {n - 2, 1}}) {
      testing::run_mtp_pairs(*model, be, *ws, *cache, std::span<const int32_t>(tokens).subspan(1), hidden.data(), from,
                             count, out.data(), out.data() + (n - 1) * V);
    }
    return out;
  };
  const std::vector<float> reference = draft(nullptr);
  const std::vector<LayerPlacement> cpu_trunk(static_cast<size_t>(L));
  for (const LayerPlacement mtp : {LayerPlacement{Device::Cuda, Device::Cuda}, LayerPlacement{Device::Cuda, Device::Cpu}}) {
    SCOPED_TRACE(mtp.experts == Device::Cuda ? "MTP block on the GPU" : "MTP block on the GPU, its experts on the CPU");
    StandInGpu gpu(gpu_ctx);
    model->set_placement(cpu_trunk, Device::Cpu, mtp);
    const std::vector<float> got = draft(&gpu);
    ASSERT_EQ(got.size(), reference.size());
    size_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += got[i] != reference[i];
    EXPECT_EQ(differ, 0u);
    EXPECT_GT(gpu.blocks, 0) << "the block's attention did not run on the stand-in GPU";
    EXPECT_EQ(gpu.expert_calls > 0, mtp.experts == Device::Cuda);
  }
  model->set_placement(cpu_trunk, Device::Cpu);
  EXPECT_THROW(load_model(gguf::ModelFiles::open(std::filesystem::path(TANDEM_SOURCE_DIR) / "tests" / "fixtures" /
                                                 "qwen35" / "model-f32.gguf"))
                   ->set_placement(std::vector<LayerPlacement>(4), Device::Cpu, {Device::Cuda, Device::Cuda}),
               Error);
}

TEST(Placement, BadPlacementsAreClearErrors) {
  const auto files = gguf::ModelFiles::open(std::filesystem::path(TANDEM_SOURCE_DIR) / "tests" / "fixtures" / "qwen2" /
                                            "model-f32.gguf");
  auto model = load_model(files);
  const int64_t L = model->hparams().n_layer;
  EXPECT_THROW(model->set_placement(std::vector<LayerPlacement>(L + 1), Device::Cpu), Error);
  // A dense model has no routed experts to place apart.
  EXPECT_THROW(model->set_placement(std::vector<LayerPlacement>(L, {Device::Cpu, Device::Cuda}), Device::Cpu), Error);
  // A GPU placement with no GPU backend: an error naming it, not a crash.
  model->set_placement(std::vector<LayerPlacement>(L, {Device::Cuda, Device::Cuda}), Device::Cuda);
  cpu::OpContext ctx(1, model->max_row());
  try {
    cpu::CpuBackend session_cpu(ctx);
    runtime::Session session(*model, model::Backends{&session_cpu, nullptr}, 16, 4);
    FAIL() << "a GPU placement ran without a GPU backend";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no GPU backend"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem::model
