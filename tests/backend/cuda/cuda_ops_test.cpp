// The CUDA op set (backend/cuda/ops.h) against the CPU backend on random inputs of real
// model shapes: Qwen2.5-0.5B (D 896, 14/2 heads of 64), Qwen3-30B-A3B (32/4 heads of 128,
// 128 experts, k 8), Qwen3.5-35B-A3B (D 2048, 16/2 heads of 256, n_rot 64, 256 experts,
// k 8), with T in {1, 7, 64, 300} tokens and contexts starting at 0 and at 1000.
//
// Error bounds (relative_error: max |gpu - cpu| / max |cpu|), each with its reason:
//   rms_norm, l2_norm, add_rms_norm    1e-5  f32 sums of <= 2048 squares in another order
//                                            (the CPU sums in f64): a few ulps
//   rope_neox                          1e-6  the same f32 angles (backend/rope.h: the
//                                            same steps from the same powf), cosf/sinf
//                                            within 2 ulp of glibc's, unfused f32 math
//   swiglu, sigmoid_gate               1e-5  expf vs the CPU's exp (each ~2 ulp)
//   add, scale                         exact one f32 operation per value
//   moe_route ids                      exact logits spaced so no two probabilities tie
//   moe_route weights                  1e-5  softmax sums of <= 512 terms in another order
//   moe_weighted_sum                   1e-5  <= 16 products summed (FMA vs mul+add)
//   shared_expert_gate_add             2e-5  a 2048-term f32 dot in another order
//                                            (~sqrt(n) ulps) through a sigmoid (slope <= 1/4)
//   argmax_rows                        exact ties to the lowest index, as std::max_element
//   kv_cache_write                     bytes equal to quant::quantize_row
//   attention, FMA kernel              2e-5  every cache type: both sides read the same
//                                            cache bytes and decode them to the same floats,
//                                            so only summation order differs (scores in
//                                            dim order as the CPU; softmax and value sums
//                                            over up to ~20000 keys in tiles and splits)
//   attention, tensor-core kernel      2e-3 x max(1, q scale)  f16/Q8_0/Q4_0 caches: q, the
//                                            Q8_0/Q4_0 values and the probabilities round to
//                                            f16 (relative 2^-11 each). A score's error is
//                                            ~2^-11 times its size (d products, random
//                                            signs), an output's a probability-weighted
//                                            mean of those and of P's rounding: a few 1e-4
//                                            of max |out| for unit-variance q, growing with
//                                            the scores (the "sharp" cases scale q by 8)
//   attention through ops.h            bit-identical to the kernel choose_attention_kernel
//                                            names (the FMA one for f32 caches and decode)
//
// Every op test needs a device and reports "skipped: no CUDA device" without one. The
// argument-check tests at the end need none: the checks run on the host before any launch.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"
#include "core/error.h"
#include "cuda_test_support.h"
#include "quant/quantize.h"
#include "runtime/sampler.h"

namespace tandem::cuda {
namespace {

using testing::download;
using testing::relative_error;
using testing::upload;

constexpr int64_t kTokenCounts[] = {1, 7, 64, 300};
constexpr int64_t kPasts[] = {0, 1000};

// One context (stream) for the whole file, never destroyed: tearing down cuBLAS from a
// static destructor races the CUDA runtime's own shutdown.
CudaContext& context() {
  static CudaContext* ctx = new CudaContext;
  return *ctx;
}
// Uploads are cudaMemcpy on the legacy stream, which the context's non-blocking stream does
// not wait for (and a pageable copy may still be in flight when cudaMemcpy returns): wait
// for everything before each launch.
cudaStream_t stream() {
  TANDEM_CUDA_CHECK(cudaDeviceSynchronize());
  return context().stream();
}
void sync() { context().synchronize(); }

// The worst error of one test's cases, printed at its end, so that a GPU run records how
// far inside its bound each op is.
class Measured {
 public:
  explicit Measured(const char* op) : op_(op) {}
  ~Measured() {
    if (cases_ > 0) std::printf("[ measured ] %s: worst relative error %.3g over %d cases\n", op_, worst_, cases_);
  }
  ::testing::AssertionResult within(double error, double bound) {
    ++cases_;
    worst_ = std::max(worst_, std::isnan(error) ? INFINITY : error);
    if (error <= bound) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "relative error " << error << " exceeds the bound " << bound;
  }

 private:
  const char* op_;
  double worst_ = 0;
  int cases_ = 0;
};

std::vector<float> random_vector(size_t n, uint32_t seed, float mean = 0.0f, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, sd);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

std::vector<int32_t> consecutive_positions(int64_t n, int64_t first) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), static_cast<int32_t>(first));
  return p;
}

// ---- norms and RoPE ----------------------------------------------------------------------

TEST(CudaOps, RmsNormMatchesCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("rms_norm");
  // (rows per token, row length): model widths, and per-head q/k norms of 64, 128, 256.
  const std::pair<int64_t, int64_t> shapes[] = {{1, 896}, {1, 2048}, {14, 64}, {32, 128}, {16, 256}};
  for (const int64_t T : kTokenCounts) {
    for (const auto& [per_token, n] : shapes) {
      const int64_t rows = T * per_token;
      const auto x = random_vector(static_cast<size_t>(rows * n), 1, 0.1f, 2.0f);
      const auto w = random_vector(static_cast<size_t>(n), 2, 1.0f, 0.1f);
      std::vector<float> want(x.size());
      cpu::rms_norm(x.data(), w.data(), rows, n, 1e-6f, want.data());
      DeviceBuffer dx = upload(x), dw = upload(w), dout(x.size() * sizeof(float));
      rms_norm(stream(), dx.as<float>(), dw.as<float>(), rows, n, 1e-6f, dout.as<float>());
      rms_norm(stream(), dx.as<float>(), dw.as<float>(), rows, n, 1e-6f, dx.as<float>());  // in place
      sync();
      EXPECT_TRUE(m.within(relative_error(download<float>(dout, x.size()), want), 1e-5)) << rows << " x " << n;
      EXPECT_TRUE(m.within(relative_error(download<float>(dx, x.size()), want), 1e-5))
          << rows << " x " << n << " in place";
    }
  }
}

// Qwen3.5's gated q: [T][H][q_h | gate_h], the query half normed into a compact [T][H][d].
TEST(CudaOps, RmsNormReadsTheInterleavedGatedQ) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("rms_norm (gated q)");
  const int64_t H = 16, d = 256;
  for (const int64_t T : kTokenCounts) {
    const auto qg = random_vector(static_cast<size_t>(T * H * 2 * d), 3);
    const auto w = random_vector(static_cast<size_t>(d), 4, 1.0f, 0.1f);
    std::vector<float> q(static_cast<size_t>(T * H * d)), want(q.size());
    for (int64_t r = 0; r < T * H; ++r) std::copy_n(qg.data() + r * 2 * d, d, q.data() + r * d);
    cpu::rms_norm(q.data(), w.data(), T * H, d, 1e-6f, want.data());
    DeviceBuffer dqg = upload(qg), dw = upload(w), dq(q.size() * sizeof(float));
    rms_norm(stream(), dqg.as<float>(), 2 * d, dw.as<float>(), T * H, d, 1e-6f, dq.as<float>(), d);
    sync();
    EXPECT_TRUE(m.within(relative_error(download<float>(dq, q.size()), want), 1e-5)) << "T " << T;
  }
}

TEST(CudaOps, AddRmsNormMatchesAddThenNorm) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("add_rms_norm");
  for (const int64_t T : kTokenCounts) {
    for (const int64_t D : {896, 2048}) {
      const auto x = random_vector(static_cast<size_t>(T * D), 5);
      const auto y = random_vector(static_cast<size_t>(T * D), 6, 0.0f, 0.5f);
      const auto w = random_vector(static_cast<size_t>(D), 7, 1.0f, 0.1f);
      std::vector<float> sum = x, want(x.size());
      cpu::add(sum.data(), y.data(), T * D);
      cpu::rms_norm(sum.data(), w.data(), T, D, 1e-6f, want.data());
      DeviceBuffer dx = upload(x), dy = upload(y), dw = upload(w), dout(x.size() * sizeof(float));
      add_rms_norm(stream(), dx.as<float>(), dy.as<float>(), dw.as<float>(), T, D, 1e-6f, dout.as<float>());
      sync();
      EXPECT_EQ(download<float>(dx, x.size()), sum) << "the residual is one f32 add per value";
      EXPECT_TRUE(m.within(relative_error(download<float>(dout, x.size()), want), 1e-5)) << T << " x " << D;
    }
  }
}

// qwen35.cpp's DeltaNet q/k normalisation: x * scale / max(|x|, eps) per head.
TEST(CudaOps, L2NormMatchesTheDeltaNetFormula) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("l2_norm");
  const int64_t heads = 16, d = 128, C = 2 * heads * d + 32 * d;  // rows read out of a wider conv row
  for (const int64_t T : kTokenCounts) {
    const auto conv = random_vector(static_cast<size_t>(T * C), 8);
    const float eps = 1e-6f, scale = 1.0f / std::sqrt(static_cast<float>(d));
    std::vector<float> want(static_cast<size_t>(T * heads * d));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        const float* src = conv.data() + t * C + h * d;
        float sum = 0;
        for (int64_t i = 0; i < d; ++i) sum += src[i] * src[i];
        const float s = scale / std::max(std::sqrt(sum), eps);
        for (int64_t i = 0; i < d; ++i) want[static_cast<size_t>((t * heads + h) * d + i)] = src[i] * s;
      }
    }
    // Rows of d inside [T][C]: row r = t * heads + h starts at t * C + h * d, so per token
    // the heads are contiguous; run one call per token with stride d.
    DeviceBuffer dconv = upload(conv), dout(want.size() * sizeof(float));
    for (int64_t t = 0; t < T; ++t) {
      l2_norm(stream(), dconv.as<float>() + t * C, d, heads, d, eps, scale, dout.as<float>() + t * heads * d, d);
    }
    sync();
    EXPECT_TRUE(m.within(relative_error(download<float>(dout, want.size()), want), 1e-5)) << "T " << T;
  }
}

TEST(CudaOps, RopeNeoxMatchesCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("rope_neox");
  struct Shape {
    int64_t heads, d, n_rot;
    float base;
  };
  // Qwen2.5-0.5B q and k, Qwen3-30B q, Qwen3.5 q (partial: 64 of 256 dims; IMRoPE for text).
  const Shape shapes[] = {{14, 64, 64, 1e6f}, {2, 64, 64, 1e6f}, {32, 128, 128, 1e6f}, {16, 256, 64, 1e7f}};
  for (const Shape& s : shapes) {
    for (const int64_t T : kTokenCounts) {
      for (const int64_t past : kPasts) {
        const auto x = random_vector(static_cast<size_t>(T * s.heads * s.d), 9);
        const auto pos = consecutive_positions(T, past);
        std::vector<float> want = x;
        cpu::rope_neox(want.data(), T, s.heads, s.d, s.n_rot, pos, s.base);
        DeviceBuffer dx = upload(x), dpos = upload(pos);
        rope_neox(stream(), dx.as<float>(), T, s.heads, s.d, s.n_rot, dpos.as<int32_t>(), s.base);
        sync();
        EXPECT_TRUE(m.within(relative_error(download<float>(dx, x.size()), want), 1e-6))
            << s.heads << " heads of " << s.d << ", T " << T << " from " << past;
      }
    }
  }
  // Far positions, out of order: the angles keep their precision.
  const std::vector<int32_t> pos = {250000, 3, 131071, 77777};
  const auto x = random_vector(4 * 16 * 256, 10);
  std::vector<float> want = x;
  cpu::rope_neox(want.data(), 4, 16, 256, 64, pos, 1e7f);
  DeviceBuffer dx = upload(x), dpos = upload(pos);
  rope_neox(stream(), dx.as<float>(), 4, 16, 256, 64, dpos.as<int32_t>(), 1e7f);
  sync();
  EXPECT_TRUE(m.within(relative_error(download<float>(dx, x.size()), want), 1e-6));
}

// ---- elementwise -------------------------------------------------------------------------

TEST(CudaOps, ElementwiseOpsMatchCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("swiglu");
  for (const int64_t n : {int64_t{1}, int64_t{7 * 768}, int64_t{300 * 512 + 3}}) {
    auto gate = random_vector(static_cast<size_t>(n), 11, 0.0f, 4.0f);
    gate[0] = -100.0f;  // e^100 overflows: silu is -0
    const auto up = random_vector(static_cast<size_t>(n), 12);
    std::vector<float> want(gate.size());
    cpu::swiglu(gate.data(), up.data(), n, want.data());
    DeviceBuffer dg = upload(gate), du = upload(up), dout(gate.size() * sizeof(float));
    swiglu(stream(), dg.as<float>(), du.as<float>(), n, dout.as<float>());
    swiglu(stream(), dg.as<float>(), du.as<float>(), n, dg.as<float>());  // in place
    sync();
    EXPECT_TRUE(m.within(relative_error(download<float>(dout, gate.size()), want), 1e-5)) << "swiglu " << n;
    EXPECT_TRUE(m.within(relative_error(download<float>(dg, gate.size()), want), 1e-5)) << "swiglu in place " << n;

    std::vector<float> sum = gate;
    cpu::add(sum.data(), up.data(), n);
    DeviceBuffer dx = upload(gate);
    add(stream(), dx.as<float>(), du.as<float>(), n);
    sync();
    EXPECT_EQ(download<float>(dx, gate.size()), sum) << "add " << n;

    std::vector<float> scaled = gate;
    for (float& v : scaled) v *= 0.125f;
    DeviceBuffer ds = upload(gate);
    scale(stream(), ds.as<float>(), 0.125f, n);
    sync();
    EXPECT_EQ(download<float>(ds, gate.size()), scaled) << "scale " << n;
  }
}

// blocks.cpp's gated attention output: o_h *= sigmoid(gate_h), the gate read out of the
// interleaved q projection [T][H][q_h | gate_h].
TEST(CudaOps, SigmoidGateReadsTheInterleavedGate) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("sigmoid_gate");
  const int64_t H = 16, d = 256;
  for (const int64_t T : kTokenCounts) {
    const auto o = random_vector(static_cast<size_t>(T * H * d), 13);
    const auto qg = random_vector(static_cast<size_t>(T * H * 2 * d), 14, 0.0f, 3.0f);
    std::vector<float> want = o;
    for (int64_t r = 0; r < T * H; ++r) {
      for (int64_t i = 0; i < d; ++i) {
        const float gate = qg[static_cast<size_t>(r * 2 * d + d + i)];
        want[static_cast<size_t>(r * d + i)] *= 1.0f / (1.0f + std::exp(-gate));
      }
    }
    DeviceBuffer dout = upload(o), dqg = upload(qg);
    sigmoid_gate(stream(), dout.as<float>(), T * H, d, dqg.as<float>() + d, 2 * d);
    sync();
    EXPECT_TRUE(m.within(relative_error(download<float>(dout, o.size()), want), 1e-5)) << "T " << T;
  }
}

// ---- MoE routing, combine, shared expert, argmax -----------------------------------------

// The CPU backend's routing (cpu::route_top_k) for T tokens.
void cpu_route(std::vector<float> logits, int64_t T, int64_t E, int64_t k, bool renormalize, std::vector<int32_t>& ids,
               std::vector<float>& weights) {
  ids.assign(static_cast<size_t>(T * k), -1);
  weights.assign(static_cast<size_t>(T * k), 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    cpu::route_top_k(logits.data() + t * E, E, k, renormalize, ids.data() + t * k, weights.data() + t * k);
  }
}

// Logits whose softmax probabilities cannot tie or swap by rounding: a shuffled ladder
// 0.03 apart with noise well below the gap.
std::vector<float> router_logits(int64_t T, int64_t E, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> noise(-0.005f, 0.005f);
  std::vector<float> logits(static_cast<size_t>(T * E));
  std::vector<int> ladder(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    std::iota(ladder.begin(), ladder.end(), 0);
    std::shuffle(ladder.begin(), ladder.end(), rng);
    for (int64_t e = 0; e < E; ++e) {
      const int rung = ladder[static_cast<size_t>(e)] - static_cast<int>(E / 2);
      logits[static_cast<size_t>(t * E + e)] = 0.03f * static_cast<float>(rung) + noise(rng);
    }
  }
  return logits;
}

TEST(CudaOps, MoeRouteMatchesCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("moe_route weights");
  // Qwen3-30B (128, 8), Qwen3.5-35B (256, 8), Qwen2-MoE-like (60, 4), wide (512, 10 and 16).
  const std::pair<int64_t, int64_t> configs[] = {{128, 8}, {256, 8}, {60, 4}, {512, 10}, {512, 16}};
  for (const auto& [E, k] : configs) {
    for (const int64_t T : kTokenCounts) {
      for (const bool renormalize : {true, false}) {
        const auto logits = router_logits(T, E, static_cast<uint32_t>(E + T));
        std::vector<int32_t> want_ids;
        std::vector<float> want_w;
        cpu_route(logits, T, E, k, renormalize, want_ids, want_w);
        DeviceBuffer dl = upload(logits), dids(want_ids.size() * 4), dw(want_w.size() * 4);
        moe_route(stream(), dl.as<float>(), T, E, k, renormalize, dids.as<int32_t>(), dw.as<float>());
        sync();
        EXPECT_EQ(download<int32_t>(dids, want_ids.size()), want_ids) << E << " experts, k " << k << ", T " << T;
        EXPECT_TRUE(m.within(relative_error(download<float>(dw, want_w.size()), want_w), 1e-5))
            << E << " experts, k " << k << ", T " << T << (renormalize ? " renormalised" : "");
      }
    }
  }
  // Exact ties (all logits equal): the lowest indices, in order, each 1/k.
  const int64_t E = 128, k = 8;
  const std::vector<float> flat(E, 0.5f);
  std::vector<int32_t> want_ids;
  std::vector<float> want_w;
  cpu_route(flat, 1, E, k, true, want_ids, want_w);
  DeviceBuffer dl = upload(flat), dids(k * 4), dw(k * 4);
  moe_route(stream(), dl.as<float>(), 1, E, k, true, dids.as<int32_t>(), dw.as<float>());
  sync();
  EXPECT_EQ(download<int32_t>(dids, k), want_ids);
  EXPECT_TRUE(m.within(relative_error(download<float>(dw, k), want_w), 1e-6));
}

TEST(CudaOps, MoeWeightedSumMatchesCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("moe_weighted_sum");
  const int64_t k = 8, D = 2048;
  for (const int64_t T : kTokenCounts) {
    const auto expert_out = random_vector(static_cast<size_t>(T * k * D), 15);
    const auto weights = random_vector(static_cast<size_t>(T * k), 16, 0.125f, 0.05f);
    std::vector<int32_t> rows(static_cast<size_t>(T * k));  // slots grouped by expert: a shuffle
    std::iota(rows.begin(), rows.end(), 0);
    std::shuffle(rows.begin(), rows.end(), std::mt19937(17));
    for (const bool grouped : {false, true}) {
      std::vector<float> want(static_cast<size_t>(T * D), 0.0f);
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t j = 0; j < k; ++j) {
          const int64_t row = grouped ? rows[static_cast<size_t>(t * k + j)] : t * k + j;
          for (int64_t c = 0; c < D; ++c) {
            want[static_cast<size_t>(t * D + c)] +=
                weights[static_cast<size_t>(t * k + j)] * expert_out[static_cast<size_t>(row * D + c)];
          }
        }
      }
      DeviceBuffer de = upload(expert_out), dw = upload(weights), drows = upload(rows), dout(want.size() * 4);
      moe_weighted_sum(stream(), de.as<float>(), grouped ? drows.as<int32_t>() : nullptr, dw.as<float>(), T, k, D,
                       dout.as<float>());
      sync();
      EXPECT_TRUE(m.within(relative_error(download<float>(dout, want.size()), want), 1e-5))
          << "T " << T << (grouped ? " grouped" : "");
    }
  }
}

TEST(CudaOps, SharedExpertGateMatchesCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  Measured m("shared_expert_gate_add");
  const int64_t D = 2048;
  for (const int64_t T : kTokenCounts) {
    const auto x = random_vector(static_cast<size_t>(T * D), 18);
    const auto gate_w = random_vector(static_cast<size_t>(D), 19, 0.0f, 0.03f);
    const auto shared = random_vector(static_cast<size_t>(T * D), 20);
    const auto out0 = random_vector(static_cast<size_t>(T * D), 21);
    std::vector<float> want = out0;
    for (int64_t t = 0; t < T; ++t) {  // as ffn_block
      float logit = 0;
      for (int64_t c = 0; c < D; ++c) logit += gate_w[static_cast<size_t>(c)] * x[static_cast<size_t>(t * D + c)];
      const float gate = 1.0f / (1.0f + std::exp(-logit));
      for (int64_t c = 0; c < D; ++c) {
        want[static_cast<size_t>(t * D + c)] += gate * shared[static_cast<size_t>(t * D + c)];
      }
    }
    DeviceBuffer dm = upload(x), dg = upload(gate_w), ds = upload(shared), dout = upload(out0);
    shared_expert_gate_add(stream(), dm.as<float>(), dg.as<float>(), ds.as<float>(), T, D, dout.as<float>());
    sync();
    EXPECT_TRUE(m.within(relative_error(download<float>(dout, want.size()), want), 2e-5)) << "T " << T;
  }
}

TEST(CudaOps, ArgmaxMatchesTheCpuSampler) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  const int64_t V = 151936, rows = 6;
  auto logits = random_vector(static_cast<size_t>(rows * V), 22, 0.0f, 3.0f);
  auto row = [&](int64_t r) { return logits.data() + r * V; };
  row(1)[100] = row(1)[5000] = row(1)[V - 1] = 50.0f;  // ties: the lowest index
  std::fill_n(row(2), V, -INFINITY);                   // all equal: index 0
  row(3)[0] = NAN;                                     // a NaN first is never replaced
  row(4)[77] = NAN;                                    // a NaN later is never chosen
  row(4)[78] = 60.0f;
  row(5)[V - 1] = 70.0f;                               // the last element
  std::vector<int32_t> want;
  for (int64_t r = 0; r < rows; ++r) {
    want.push_back(runtime::Sampler::argmax(std::span<const float>(row(r), static_cast<size_t>(V))));
  }
  EXPECT_EQ(want[1], 100);
  DeviceBuffer dl = upload(logits), dout(rows * 4);
  argmax_rows(stream(), dl.as<float>(), rows, V, dout.as<int32_t>());
  sync();
  EXPECT_EQ(download<int32_t>(dout, rows), want);
}

// ---- KV cache writes ---------------------------------------------------------------------

size_t row_bytes_of(DType type, int64_t n) {
  const DTypeInfo& info = dtype_info(type);
  return static_cast<size_t>(n / info.block_elems) * info.block_bytes;
}

TEST(CudaOps, KvCacheWriteIsByteIdenticalToTheCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  const std::pair<int64_t, int64_t> shapes[] = {{2, 64}, {4, 128}, {2, 256}};  // (KV heads, head size)
  for (const DType type : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
    for (const auto& [kv_heads, d] : shapes) {
      for (const int64_t T : kTokenCounts) {
        for (const int64_t past : kPasts) {
          const int64_t width = kv_heads * d, n_ctx = past + T + 3;
          const size_t row_bytes = row_bytes_of(type, width);
          auto rows = random_vector(static_cast<size_t>(T * width), 23, 0.0f, 2.0f);
          // Blocks the quantizers treat specially: zeros and -0 (d = +0), a magnitude tie
          // between signs (the first wins), values on a half-step grid, and a huge outlier.
          std::fill_n(rows.begin(), 32, 0.0f);
          rows[5] = -0.0f;
          if (T * width >= 128) {
            for (int j = 0; j < 32; ++j) rows[static_cast<size_t>(32 + j)] = 0.01f * static_cast<float>(j - 16);
            rows[32] = 3.0f, rows[40] = -3.0f;
            for (int j = 0; j < 32; ++j) rows[static_cast<size_t>(64 + j)] = 0.5f * static_cast<float>(j - 16);
            rows[100] = 6.0e4f;
          }
          const auto pos = consecutive_positions(T, past);
          std::vector<uint8_t> want(static_cast<size_t>(n_ctx) * row_bytes, 0xAB);
          for (int64_t t = 0; t < T; ++t) {
            quant::quantize_row(type, rows.data() + t * width, want.data() + static_cast<size_t>(past + t) * row_bytes,
                                width);
          }
          DeviceBuffer cache(want.size()), drows = upload(rows), dpos = upload(pos);
          TANDEM_CUDA_CHECK(cudaMemset(cache.data(), 0xAB, want.size()));
          kv_cache_write(stream(), drows.as<float>(), T, width, dpos.as<int32_t>(),
                         KvCacheView{cache.data(), type, row_bytes, n_ctx});
          sync();
          const auto got = download<uint8_t>(cache, want.size());
          size_t first_diff = 0;
          while (first_diff < want.size() && got[first_diff] == want[first_diff]) ++first_diff;
          EXPECT_EQ(first_diff, want.size()) << dtype_name(type) << ", " << kv_heads << " x " << d << ", T " << T
                                             << " from " << past << ": first differing byte " << first_diff
                                             << " (row " << first_diff / row_bytes << ")";
        }
      }
    }
  }
}

// ---- attention ---------------------------------------------------------------------------

struct AttentionCase {
  int64_t n_head, n_head_kv, d;
  DType k_type, v_type;
  int64_t T, past;
  float q_scale = 1.0f;
  int64_t extra_keys = 0;  // cache rows past the last position, inside n_kv (a graph's bound)
};

std::string describe(const AttentionCase& c) {
  return std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + " heads of " + std::to_string(c.d) + ", K " +
         std::string(dtype_name(c.k_type)) + " V " + std::string(dtype_name(c.v_type)) + ", T " + std::to_string(c.T) +
         " from " + std::to_string(c.past) + (c.q_scale != 1.0f ? ", sharp" : "") +
         (c.extra_keys ? ", n_kv bound " + std::to_string(c.past + c.T + c.extra_keys) : "");
}

// A cache of n_ctx random rows in `type`, as the CPU would have written them.
std::vector<uint8_t> random_cache(DType type, int64_t n_ctx, int64_t width, uint32_t seed) {
  const auto values = random_vector(static_cast<size_t>(n_ctx * width), seed);
  const size_t row_bytes = row_bytes_of(type, width);
  std::vector<uint8_t> cache(static_cast<size_t>(n_ctx) * row_bytes);
  for (int64_t p = 0; p < n_ctx; ++p) {
    quant::quantize_row(type, values.data() + p * width, cache.data() + static_cast<size_t>(p) * row_bytes, width);
  }
  return cache;
}

// Worst errors of both attention kernels over one test's cases.
struct AttentionMeasured {
  Measured fma, mma;
  explicit AttentionMeasured(const char* fma_name, const char* mma_name) : fma(fma_name), mma(mma_name) {}
};

double mma_bound(const AttentionCase& c) { return 2e-3 * std::max(1.0f, c.q_scale); }

// Each kernel forced (the FMA one for every case, the tensor-core one wherever no cache is
// f32, including blocks of fewer than 64 rows) against cpu::attention, then ops.h's entry,
// which must give exactly what its chosen kernel gave.
void check_attention(AttentionMeasured& m, const AttentionCase& c) {
  SCOPED_TRACE(describe(c));
  const int64_t width = c.n_head_kv * c.d, n_kv = c.past + c.T + c.extra_keys, n_ctx = n_kv;
  auto k_cache = random_cache(c.k_type, n_ctx, width, 31);
  auto v_cache = random_cache(c.v_type, n_ctx, width, 32);
  const auto q = random_vector(static_cast<size_t>(c.T * c.n_head * c.d), 33, 0.0f, c.q_scale);
  const auto pos = consecutive_positions(c.T, c.past);
  const size_t k_row = row_bytes_of(c.k_type, width), v_row = row_bytes_of(c.v_type, width);

  cpu::OpContext cpu_ctx(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())), 256);
  cpu_ctx.reserve_context(n_ctx, c.n_head / c.n_head_kv);
  std::vector<float> want(q.size());
  cpu::attention(cpu_ctx, q.data(), c.T, c.n_head, c.n_head_kv, c.d, cpu::KvView{k_cache.data(), c.k_type, k_row},
                 cpu::KvView{v_cache.data(), c.v_type, v_row}, pos, want.data());

  DeviceBuffer dk = upload(k_cache), dv = upload(v_cache), dq = upload(q), dpos = upload(pos);
  DeviceBuffer dout(q.size() * sizeof(float));
  const size_t scratch_bytes = attention_scratch_bytes(c.T, c.n_head, c.n_head_kv, c.d, n_kv);
  DeviceBuffer scratch(std::max<size_t>(scratch_bytes, 16));
  const KvCacheView kv{dk.data(), c.k_type, k_row, n_ctx}, vv{dv.data(), c.v_type, v_row, n_ctx};
  auto forced = [&](detail::AttentionKernel kernel) {
    TANDEM_CUDA_CHECK(cudaMemset(dout.data(), 0xFF, q.size() * sizeof(float)));  // NaNs: every value must be written
    detail::launch_attention(stream(), dq.as<float>(), c.T, c.n_head, c.n_head_kv, c.d, kv, vv, dpos.as<int32_t>(),
                             n_kv, dout.as<float>(), scratch.data(), kernel);
    sync();
    return download<float>(dout, q.size());
  };
  const std::vector<float> fma = forced(detail::AttentionKernel::kFma);
  EXPECT_TRUE(m.fma.within(relative_error(fma, want), 2e-5)) << "FMA kernel";
  std::vector<float> mma;
  if (c.k_type != DType::F32 && c.v_type != DType::F32 && device_has_mma()) {
    mma = forced(detail::AttentionKernel::kTensorCores);
    EXPECT_TRUE(m.mma.within(relative_error(mma, want), mma_bound(c))) << "tensor-core kernel";
  }

  TANDEM_CUDA_CHECK(cudaMemset(dout.data(), 0xFF, q.size() * sizeof(float)));
  attention(stream(), dq.as<float>(), c.T, c.n_head, c.n_head_kv, c.d, kv, vv, dpos.as<int32_t>(), n_kv,
            dout.as<float>(), scratch.data(), scratch_bytes);
  sync();
  const bool chose_mma = detail::choose_attention_kernel(c.T, c.n_head, c.n_head_kv, c.k_type, c.v_type) ==
                         detail::AttentionKernel::kTensorCores;
  const std::vector<float> got = download<float>(dout, q.size());
  EXPECT_EQ(std::memcmp(got.data(), (chose_mma ? mma : fma).data(), got.size() * sizeof(float)), 0)
      << "ops.h attention differs from the " << (chose_mma ? "tensor-core" : "FMA") << " kernel it chose";
}

TEST(CudaOps, AttentionMatchesCpuOnModelShapes) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  AttentionMeasured m("attention FMA (model shapes)", "attention tensor cores (model shapes)");
  const std::tuple<int64_t, int64_t, int64_t> models[] = {
      {14, 2, 64},   // Qwen2.5-0.5B
      {32, 4, 128},  // Qwen3-30B-A3B
      {16, 2, 256},  // Qwen3.5-35B-A3B
  };
  for (const auto& [H, H_kv, d] : models) {
    for (const DType type : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
      for (const int64_t T : kTokenCounts) {
        for (const int64_t past : kPasts) check_attention(m, {H, H_kv, d, type, type, T, past});
      }
    }
  }
}

TEST(CudaOps, AttentionOtherHeadSizesAndMixedCaches) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  AttentionMeasured m("attention FMA (d 80/96, mixed caches)", "attention tensor cores (d 80/96, mixed caches)");
  for (const int64_t T : {int64_t{1}, int64_t{64}}) {
    for (const int64_t past : kPasts) {
      check_attention(m, {8, 2, 80, DType::F32, DType::F32, T, past});   // 80: f32/f16 only (not whole blocks)
      check_attention(m, {8, 2, 80, DType::F16, DType::F16, T, past});
      check_attention(m, {12, 4, 96, DType::F16, DType::F16, T, past});
      check_attention(m, {12, 4, 96, DType::Q8_0, DType::Q4_0, T, past});
      check_attention(m, {16, 2, 256, DType::Q8_0, DType::F16, T, past});
      check_attention(m, {16, 2, 256, DType::F16, DType::Q4_0, T, past});
    }
  }
}

TEST(CudaOps, AttentionEdgeCases) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  AttentionMeasured m("attention FMA (edge cases)", "attention tensor cores (edge cases)");
  // Peaked softmax (scores of tens): the running max moves often and rescales.
  check_attention(m, {16, 2, 256, DType::F16, DType::F16, 7, 1000, 8.0f});
  check_attention(m, {14, 2, 64, DType::F32, DType::F32, 64, 1000, 8.0f});
  // A graph's bound: n_kv is the cache size, the rows past the positions must be ignored.
  check_attention(m, {16, 2, 256, DType::F16, DType::F16, 1, 1000, 1.0f, 3000});
  check_attention(m, {32, 4, 128, DType::Q8_0, DType::Q8_0, 7, 0, 1.0f, 500});
  // A long decode: the most splits.
  check_attention(m, {16, 2, 256, DType::F16, DType::F16, 1, 20000});
  check_attention(m, {14, 2, 64, DType::Q4_0, DType::Q4_0, 2, 20000});
  // A group wider than a block's rows (32 query heads per KV head of 256).
  check_attention(m, {64, 2, 256, DType::F16, DType::F16, 7, 100});
  check_attention(m, {64, 2, 256, DType::F32, DType::F32, 1, 1000});
  // No grouping at all.
  check_attention(m, {4, 4, 128, DType::F32, DType::F32, 300, 0});
  check_attention(m, {4, 4, 128, DType::F16, DType::F16, 300, 0});
  // A sharp prompt over a long quantized context (the tensor-core kernel's online softmax).
  check_attention(m, {32, 4, 128, DType::Q8_0, DType::Q8_0, 300, 1000, 8.0f});
}

// ---- argument checks (host only: no device needed) ---------------------------------------

template <class Fn>
void expect_error(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(CudaOpsArguments, BadArgumentsAreClearErrors) {
  // Fake, aligned device addresses: every case fails in the host checks, before a launch.
  auto* f = reinterpret_cast<float*>(uintptr_t{1} << 20);
  auto* i32 = reinterpret_cast<int32_t*>(uintptr_t{1} << 21);
  void* mem = reinterpret_cast<void*>(uintptr_t{1} << 22);
  const KvCacheView f16{mem, DType::F16, 2 * 128 * 2, 100};
  expect_error([&] { attention(nullptr, f, 1, 8, 2, 72, f16, f16, i32, 10, f, mem, 1 << 20); }, "head size 72");
  expect_error([&] { attention(nullptr, f, 1, 8, 3, 128, f16, f16, i32, 10, f, mem, 1 << 20); }, "8 query heads");
  const KvCacheView q41{mem, DType::Q4_1, 2 * 4 * 20, 100};
  expect_error([&] { attention(nullptr, f, 1, 8, 2, 128, q41, f16, i32, 10, f, mem, 1 << 20); }, "Q4_1");
  const KvCacheView q8_80{mem, DType::Q8_0, 5 * 34, 100};
  expect_error([&] { attention(nullptr, f, 1, 8, 2, 80, q8_80, q8_80, i32, 10, f, mem, 1 << 20); },
               "multiple of 32");
  expect_error([&] { attention(nullptr, f, 1, 8, 2, 128, f16, f16, i32, 101, f, mem, 1 << 20); }, "101 keys");
  const KvCacheView short_rows{mem, DType::F16, 100, 100};
  expect_error([&] { attention(nullptr, f, 1, 8, 2, 128, short_rows, f16, i32, 10, f, mem, 1 << 20); }, "too short");
  const KvCacheView long_f16{mem, DType::F16, 2 * 128 * 2, 100000};
  expect_error([&] { attention(nullptr, f, 1, 8, 2, 128, long_f16, long_f16, i32, 100000, f, mem, 16); }, "scratch");
  expect_error([&] { attention(nullptr, f + 1, 1, 8, 2, 128, f16, f16, i32, 10, f, mem, 1 << 20); }, "aligned");
  expect_error([&] { moe_route(nullptr, f, 1, 128, 17, true, i32, f); }, "17 experts per token");
  expect_error([&] { moe_route(nullptr, f, 1, 4, 8, true, i32, f); }, "8 experts per token");
  expect_error([&] { moe_route(nullptr, f, 1, 1024, 8, true, i32, f); }, "1024 experts");
  const KvCacheView bf16{mem, DType::BF16, 512, 100};
  expect_error([&] { kv_cache_write(nullptr, f, 1, 256, i32, bf16); }, "BF16");
  expect_error([&] { rope_neox(nullptr, f, 1, 2, 64, 65, i32, 1e4f); }, "rotary dims 65");
  expect_error([&] { rms_norm(nullptr, f, 64, f, 4, 128, 1e-6f, f, 128); }, "strides");
  expect_error([&] { add_rms_norm(nullptr, f, f, f, 1, 64, 1e-6f, f); }, "alias");
}

TEST(CudaOpsArguments, ScratchCoversEverySmallerCall) {
  // attention_scratch_bytes(max) must cover every call up to max tokens and keys, by
  // either kernel.
  const int64_t H = 16, H_kv = 2, d = 256;
  const size_t bound = attention_scratch_bytes(300, H, H_kv, d, 5000);
  for (const auto kernel : {detail::AttentionKernel::kFma, detail::AttentionKernel::kTensorCores}) {
    for (int64_t T = 1; T <= 300; T += 13) {
      for (int64_t n_kv = T; n_kv <= 5000; n_kv += 37) {
        EXPECT_LE(detail::plan_attention(T, H, H_kv, d, n_kv, kernel).scratch_bytes, bound)
            << "T " << T << ", " << n_kv << " keys, kernel " << static_cast<int>(kernel);
      }
    }
  }
  EXPECT_EQ(detail::plan_attention(300, H, H_kv, d, 1300).n_splits, 1) << "a long prompt has blocks enough";
  EXPECT_GT(detail::plan_attention(1, H, H_kv, d, 1001).n_splits, 1) << "decode splits the context";
  // The tensor-core kernel never splits (its prompts would need tens of MB of partials).
  for (const int64_t T : {int64_t{1}, int64_t{8}, int64_t{300}}) {
    EXPECT_EQ(detail::plan_attention(T, H, H_kv, d, 20000, detail::AttentionKernel::kTensorCores).n_splits, 1);
    EXPECT_EQ(detail::plan_attention(T, H, H_kv, d, 20000, detail::AttentionKernel::kTensorCores).scratch_bytes, 0u);
  }
}

// The split partials are not in plan/memory.cpp's scratch estimate: they live in the
// planner's reserve (vram_reserve: 256 MiB + 5% of the budget), which holds only while
// they stay small. From plan_attention's rules (splits <= 256 / blocks + 1, blocks >= T H / 32,
// each split T H (d + 2) floats) they never pass 2 x 8192 x (d + 2) floats (8.5 MB at d 128).
TEST(CudaOpsArguments, ScratchStaysSmallForAnyBatch) {
  const std::tuple<int64_t, int64_t, int64_t> shapes[] = {{14, 2, 64}, {32, 4, 128}, {16, 2, 256}, {64, 2, 256}, {8, 8, 128}};
  for (const auto& [H, H_kv, d] : shapes) {
    EXPECT_LE(attention_scratch_bytes(2048, H, H_kv, d, 32768), size_t{2} * 8192 * static_cast<size_t>(d + 2) * 4)
        << H << "/" << H_kv << " heads of " << d;
  }
}

TEST(CudaOpsArguments, TensorCoresOnlyForPromptsOverRoundableCaches) {
  using detail::AttentionKernel;
  using detail::choose_attention_kernel;
  // An f32 cache is never rounded to f16; decode-sized calls (< 64 rows per KV head) stay on
  // the FMA kernel: both hold on any machine.
  for (const int64_t T : {int64_t{1}, int64_t{7}, int64_t{512}}) {
    EXPECT_EQ(choose_attention_kernel(T, 16, 2, DType::F32, DType::F32), AttentionKernel::kFma);
    EXPECT_EQ(choose_attention_kernel(T, 16, 2, DType::F16, DType::F32), AttentionKernel::kFma);
    EXPECT_EQ(choose_attention_kernel(T, 16, 2, DType::F32, DType::Q8_0), AttentionKernel::kFma);
  }
  EXPECT_EQ(choose_attention_kernel(7, 16, 2, DType::F16, DType::F16), AttentionKernel::kFma);  // 56 rows
  EXPECT_EQ(choose_attention_kernel(15, 4, 4, DType::Q8_0, DType::Q8_0), AttentionKernel::kFma);
  // 64 rows per KV head but 4 blocks: the FMA kernel splits the context over more.
  EXPECT_EQ(choose_attention_kernel(8, 16, 2, DType::F16, DType::F16), AttentionKernel::kFma);
  EXPECT_EQ(choose_attention_kernel(127, 16, 2, DType::F16, DType::F16), AttentionKernel::kFma);  // 31.75 blocks
  // Prompts over f16/quantized caches take the tensor cores where the device has them.
  int devices = 0, major = 0;
  const bool mma = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0 &&
                   cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess && major >= 8;
  const AttentionKernel prompt = mma ? AttentionKernel::kTensorCores : AttentionKernel::kFma;
  EXPECT_EQ(choose_attention_kernel(128, 16, 2, DType::F16, DType::F16), prompt);  // 32 blocks of 64 rows
  EXPECT_EQ(choose_attention_kernel(512, 32, 4, DType::Q8_0, DType::Q4_0), prompt);
  EXPECT_EQ(choose_attention_kernel(147, 14, 14, DType::Q4_0, DType::F16), prompt);
}

}  // namespace
}  // namespace tandem::cuda
