// Gated DeltaNet on the GPU against the CPU backend (backend/cpu/delta_net.h and the
// DeltaNet block of model/qwen35.cpp), on random inputs of Qwen3.5-35B-A3B's shapes
// (n_k 16, n_v 32, d_k = d_v = 128, K 4, C 8192) and a small one, for T in {1, 5, 64, 65,
// 200}, with the state of a first call carried into a second (outputs of both calls and
// the states after each compared).
//
// Error bounds (relative_error: max |gpu - cpu| / max |cpu|), all math f32 on both sides:
// - conv: 1e-5. A 4-term sum (the GPU contracts it to FMAs) and expf (2 ulp); the new
//   state is a copy, so it must be bit-exact.
// - prep: 1e-5. q, k differ only in the order of a 128-term sum of squares; beta, g by
//   expf/log1pf ulps; v is a copy (bit-exact).
// - recurrent vs CPU recurrent: 5e-5. The same operations per token; only the order of
//   the two 128-term dot products and FMA contraction differ (~1e-6 per step), and the
//   update is contractive (decay <= 1, |I - b k k^T| <= 1 for |k| = 1, b in [0, 1]), so
//   over 400 tokens the error stays far below the bound.
// - chunked vs CPU chunked: 5e-5, the same algorithm, summation order only. Chunked vs
//   CPU recurrent (the definition): 2e-4, the CPU's own chunked-vs-recurrent test allows
//   1e-4 absolute on O(1) values; the forward substitution reorders the whole sum.
// - gated norm: 1e-5 (f32 tree sum of 128 squares vs the CPU's f64 sum; expf).
// - the whole layer (conv, prep, chunked prompt, recurrent decode, gated norm): 2e-4.
// Each test prints its worst measured error, so the first GPU run shows the margins.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/delta_net.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/delta_net.h"
#include "core/error.h"
#include "cuda_test_support.h"

namespace tandem::cuda {
namespace {

using testing::download;
using testing::relative_error;
using testing::upload;

constexpr DeltaNetShape kReal{16, 32, 128, 128};  // Qwen3.5-35B-A3B
constexpr DeltaNetShape kSmall{2, 4, 16, 8};      // as the CPU tests: 4 value heads over 2 key heads
constexpr int64_t kConvK = 4;
constexpr float kEps = 1e-6f;  // the model's rms eps

cpu::DeltaNetShape cpu_shape(const DeltaNetShape& s) { return {s.n_k, s.n_v, s.d_k, s.d_v}; }
int64_t channels(const DeltaNetShape& s) { return 2 * s.n_k * s.d_k + s.n_v * s.d_v; }
std::string name(const DeltaNetShape& s) { return s.d_k == 128 ? "real" : "small"; }

// Host -> device copies use the legacy stream and the ops a non-blocking one: the tests
// order them with a device-wide sync.
void sync_device() { TANDEM_CUDA_CHECK(cudaDeviceSynchronize()); }

std::vector<float> normal_vector(size_t n, std::mt19937_64& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

// Worst error of a test, printed at its end.
struct Worst {
  double value = 0;
  std::string where;
  void add(double e, const std::string& at) {
    if (e > value) value = e, where = at;
  }
  void print(const char* what) const { std::printf("[ measured ] %s: worst relative error %.3g (%s)\n", what, value, where.c_str()); }
};

// ---------------------------------------------------------------------------------------
// Conv

TEST(CudaDeltaNet, ConvMatchesCpuAcrossTwoCalls) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  Worst worst;
  const std::pair<int64_t, int64_t> calls[] = {{1, 1}, {5, 2}, {64, 1}, {65, 17}, {200, 5}, {2, 200}};
  for (const int64_t C : {channels(kReal), int64_t{40}}) {
    for (const auto& [T1, T2] : calls) {
      SCOPED_TRACE("C=" + std::to_string(C) + " T1=" + std::to_string(T1) + " T2=" + std::to_string(T2));
      std::mt19937_64 rng(static_cast<uint64_t>(C * 1000 + T1 * 10 + T2));
      const int64_t T = T1 + T2;
      const auto P = normal_vector(static_cast<size_t>(T * C), rng);
      const auto taps = normal_vector(static_cast<size_t>(C * kConvK), rng, 0.5f);
      auto cpu_state = normal_vector(static_cast<size_t>((kConvK - 1) * C), rng);  // an earlier call's inputs
      std::vector<float> cpu_out(P.size());

      DeviceBuffer d_P = upload(P), d_taps = upload(taps), d_state = upload(cpu_state);
      DeviceBuffer d_out(P.size() * sizeof(float));
      sync_device();
      const int64_t lens[] = {T1, T2};
      int64_t t0 = 0;
      for (int call = 0; call < 2; ++call) {
        const int64_t n = lens[call];
        cpu::conv1d_silu(P.data() + t0 * C, n, C, taps.data(), kConvK, cpu_state.data(), cpu_out.data() + t0 * C);
        conv1d_silu(ctx.stream(), d_P.as<float>() + t0 * C, n, C, d_taps.as<float>(), kConvK, d_state.as<float>(),
                    d_out.as<float>() + t0 * C);
        sync_device();
        EXPECT_EQ(download<float>(d_state, cpu_state.size()), cpu_state) << "state after call " << call + 1;
        t0 += n;
      }
      const double e = relative_error(download<float>(d_out, cpu_out.size()), cpu_out);
      EXPECT_LT(e, 1e-5);
      worst.add(e, "C=" + std::to_string(C) + " T1=" + std::to_string(T1));
    }
  }
  worst.print("conv1d_silu");
}

// ---------------------------------------------------------------------------------------
// Prep: the reference is qwen35.cpp's loop, written out again.

struct PrepRef {
  std::vector<float> q, k, v, beta, g;
};

float softplus_ref(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

PrepRef prep_reference(const DeltaNetShape& sh, int64_t T, const std::vector<float>& conv,
                       const std::vector<float>& b, const std::vector<float>& alpha, const std::vector<float>& a,
                       const std::vector<float>& dt_bias) {
  const int64_t C = channels(sh), Ck = sh.n_k * sh.d_k, Cv = sh.n_v * sh.d_v, dk = sh.d_k;
  PrepRef r;
  r.q.resize(static_cast<size_t>(T * Ck));
  r.k.resize(r.q.size());
  r.v.resize(static_cast<size_t>(T * Cv));
  r.beta.resize(static_cast<size_t>(T * sh.n_v));
  r.g.resize(r.beta.size());
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for (int64_t t = 0; t < T; ++t) {
    const float* row = conv.data() + t * C;
    for (int64_t head = 0; head < sh.n_k; ++head) {
      for (int part = 0; part < 2; ++part) {
        const float* src = row + part * Ck + head * dk;
        float* dst = (part == 0 ? r.q.data() : r.k.data()) + t * Ck + head * dk;
        float sum = 0;
        for (int64_t i = 0; i < dk; ++i) sum += src[i] * src[i];
        const float scale = (part == 0 ? q_scale : 1.0f) / std::max(std::sqrt(sum), kEps);
        for (int64_t i = 0; i < dk; ++i) dst[i] = src[i] * scale;
      }
    }
    std::copy_n(row + 2 * Ck, Cv, r.v.data() + t * Cv);
    for (int64_t j = 0; j < sh.n_v; ++j) {
      const auto at = static_cast<size_t>(t * sh.n_v + j);
      r.beta[at] = 1.0f / (1.0f + std::exp(-b[at]));
      r.g[at] = a[static_cast<size_t>(j)] * softplus_ref(alpha[at] + dt_bias[static_cast<size_t>(j)]);
    }
  }
  return r;
}

// The gate inputs of one test: a = -exp(A_log) < 0 as the converter writes it; alpha wide
// enough that some alpha + dt exceed 20 (softplus's linear branch).
struct GateInputs {
  std::vector<float> b, alpha, a, dt_bias;
};

GateInputs random_gates(const DeltaNetShape& sh, int64_t T, std::mt19937_64& rng) {
  GateInputs in;
  in.b = normal_vector(static_cast<size_t>(T * sh.n_v), rng, 2.0f);
  in.alpha = normal_vector(in.b.size(), rng, 8.0f);
  in.a = normal_vector(static_cast<size_t>(sh.n_v), rng);
  for (float& x : in.a) x = -std::exp(x);
  in.dt_bias = normal_vector(static_cast<size_t>(sh.n_v), rng);
  return in;
}

TEST(CudaDeltaNet, PrepMatchesQwen35) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  Worst worst;
  for (const DeltaNetShape& sh : {kReal, kSmall}) {
    for (const int64_t T : {1, 5, 64, 65, 200}) {
      SCOPED_TRACE(name(sh) + " T=" + std::to_string(T));
      std::mt19937_64 rng(static_cast<uint64_t>(T * 7 + sh.d_k));
      auto conv = normal_vector(static_cast<size_t>(T * channels(sh)), rng);
      for (int64_t i = 0; i < sh.d_k; ++i) conv[static_cast<size_t>(i)] = 0.0f;  // a zero q head: the eps floor
      const GateInputs gates = random_gates(sh, T, rng);
      const PrepRef want = prep_reference(sh, T, conv, gates.b, gates.alpha, gates.a, gates.dt_bias);

      DeviceBuffer d_conv = upload(conv), d_b = upload(gates.b), d_alpha = upload(gates.alpha);
      DeviceBuffer d_a = upload(gates.a), d_dt = upload(gates.dt_bias);
      DeviceBuffer d_q(want.q.size() * 4), d_k(want.k.size() * 4), d_v(want.v.size() * 4);
      sync_device();
      // beta and g written over b and alpha: the aliasing the header allows.
      delta_net_prep(ctx.stream(), sh, T, d_conv.as<float>(), d_b.as<float>(), d_alpha.as<float>(), d_a.as<float>(),
                     d_dt.as<float>(), kEps, d_q.as<float>(), d_k.as<float>(), d_v.as<float>(), d_b.as<float>(),
                     d_alpha.as<float>());
      sync_device();
      const double errors[] = {relative_error(download<float>(d_q, want.q.size()), want.q),
                               relative_error(download<float>(d_k, want.k.size()), want.k),
                               relative_error(download<float>(d_b, want.beta.size()), want.beta),
                               relative_error(download<float>(d_alpha, want.g.size()), want.g)};
      const char* names[] = {"q", "k", "beta", "g"};
      for (int i = 0; i < 4; ++i) {
        EXPECT_LT(errors[i], 1e-5) << names[i];
        worst.add(errors[i], name(sh) + " T=" + std::to_string(T) + " " + names[i]);
      }
      EXPECT_EQ(download<float>(d_v, want.v.size()), want.v);
    }
  }
  worst.print("delta_net_prep");
}

// ---------------------------------------------------------------------------------------
// Delta rule

struct DeltaInputs {
  std::vector<float> q, k, v, g, beta;
};

// As the CPU tests: q, k L2-normalised (q also / sqrt(d_k)), v normal, beta in [0, 1),
// g in (-max_rate, 0] (max_rate 2: fast decay; 0.05: a long memory, the harder case).
DeltaInputs random_delta_inputs(const DeltaNetShape& sh, int64_t T, float max_rate, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  DeltaInputs in;
  auto normalised = [&](std::vector<float>& x, float scale) {
    x = normal_vector(static_cast<size_t>(T * sh.n_k * sh.d_k), rng);
    for (int64_t r = 0; r < T * sh.n_k; ++r) {
      float norm = 0;
      for (int64_t i = 0; i < sh.d_k; ++i) norm += x[r * sh.d_k + i] * x[r * sh.d_k + i];
      for (int64_t i = 0; i < sh.d_k; ++i) x[r * sh.d_k + i] *= scale / std::sqrt(norm);
    }
  };
  normalised(in.q, 1.0f / std::sqrt(static_cast<float>(sh.d_k)));
  normalised(in.k, 1.0f);
  in.v = normal_vector(static_cast<size_t>(T * sh.n_v * sh.d_v), rng);
  in.g.resize(static_cast<size_t>(T * sh.n_v));
  in.beta.resize(in.g.size());
  for (float& x : in.g) x = -max_rate * unit(rng);
  for (float& x : in.beta) x = unit(rng);
  return in;
}

enum class Path { recurrent, chunked };

struct DeltaCase {
  DeltaNetShape shape;
  int64_t T1, T2;
  float max_rate;
};

std::string describe(const DeltaCase& c) {
  return name(c.shape) + " T1=" + std::to_string(c.T1) + " T2=" + std::to_string(c.T2) +
         " rate=" + std::to_string(c.max_rate);
}

std::vector<DeltaCase> delta_cases() {
  std::vector<DeltaCase> cases;
  const std::pair<int64_t, int64_t> calls[] = {{1, 1}, {5, 5}, {64, 1}, {65, 64}, {200, 65}, {1, 200}};
  for (const DeltaNetShape& sh : {kReal, kSmall}) {
    for (const auto& [T1, T2] : calls) {
      for (const float rate : {2.0f, 0.05f}) cases.push_back({sh, T1, T2, rate});
    }
  }
  return cases;
}

// Runs one case on the GPU by `path` and on the CPU by the recurrence (the definition) and
// by `path`'s CPU twin; returns {error vs the same algorithm, error vs the recurrence},
// each the worst over both calls' outputs and the states after each call.
std::pair<double, double> run_delta_case(CudaContext& ctx, cpu::OpContext& cpu_ctx, const DeltaCase& c, Path path) {
  const DeltaNetShape& sh = c.shape;
  const int64_t T = c.T1 + c.T2, Ck = sh.n_k * sh.d_k, Cv = sh.n_v * sh.d_v;
  const DeltaInputs in = random_delta_inputs(sh, T, c.max_rate, static_cast<uint64_t>(T * 31 + sh.d_k + c.max_rate * 100));
  std::mt19937_64 rng(static_cast<uint64_t>(T));
  const auto state0 = normal_vector(static_cast<size_t>(sh.n_v * sh.d_k * sh.d_v), rng, 0.5f);  // carried from before

  std::vector<float> rec_state = state0, same_state = state0;
  std::vector<float> rec_out(in.v.size()), same_out(in.v.size());
  DeviceBuffer d_q = upload(in.q), d_k = upload(in.k), d_v = upload(in.v), d_g = upload(in.g);
  DeviceBuffer d_beta = upload(in.beta), d_state = upload(state0);
  DeviceBuffer d_out(in.v.size() * sizeof(float));
  const size_t scratch_bytes = delta_rule_chunked_scratch_bytes(sh, std::max(c.T1, c.T2));
  DeviceBuffer d_scratch(scratch_bytes);
  sync_device();

  double err_same = 0, err_rec = 0;
  const int64_t lens[] = {c.T1, c.T2};
  int64_t t0 = 0;
  for (int call = 0; call < 2; ++call) {
    const int64_t n = lens[call];
    const float *q = in.q.data() + t0 * Ck, *k = in.k.data() + t0 * Ck, *v = in.v.data() + t0 * Cv;
    const float *g = in.g.data() + t0 * sh.n_v, *beta = in.beta.data() + t0 * sh.n_v;
    cpu::delta_rule_recurrent(cpu_ctx, cpu_shape(sh), n, q, k, v, g, beta, rec_state.data(), rec_out.data() + t0 * Cv);
    if (path == Path::chunked) {
      cpu::delta_rule_chunked(cpu_ctx, cpu_shape(sh), n, q, k, v, g, beta, same_state.data(), same_out.data() + t0 * Cv);
    } else {
      cpu::delta_rule_recurrent(cpu_ctx, cpu_shape(sh), n, q, k, v, g, beta, same_state.data(),
                                same_out.data() + t0 * Cv);
    }
    const float *dq = d_q.as<float>() + t0 * Ck, *dk = d_k.as<float>() + t0 * Ck, *dv = d_v.as<float>() + t0 * Cv;
    const float *dg = d_g.as<float>() + t0 * sh.n_v, *dbeta = d_beta.as<float>() + t0 * sh.n_v;
    float* dout = d_out.as<float>() + t0 * Cv;
    if (path == Path::chunked) {
      delta_rule_chunked(ctx.stream(), sh, n, dq, dk, dv, dg, dbeta, d_state.as<float>(), dout, d_scratch.data(),
                         scratch_bytes);
    } else {
      delta_rule_recurrent(ctx.stream(), sh, n, dq, dk, dv, dg, dbeta, d_state.as<float>(), dout);
    }
    sync_device();
    const auto state = download<float>(d_state, state0.size());
    err_same = std::max(err_same, relative_error(state, same_state));
    err_rec = std::max(err_rec, relative_error(state, rec_state));
    t0 += n;
  }
  const auto out = download<float>(d_out, in.v.size());
  err_same = std::max(err_same, relative_error(out, same_out));
  err_rec = std::max(err_rec, relative_error(out, rec_out));
  return {err_same, err_rec};
}

TEST(CudaDeltaNet, RecurrentMatchesCpuAcrossTwoCalls) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  cpu::OpContext cpu_ctx(4, 256);
  Worst worst;
  for (const DeltaCase& c : delta_cases()) {
    SCOPED_TRACE(describe(c));
    const double err = run_delta_case(ctx, cpu_ctx, c, Path::recurrent).first;
    EXPECT_LT(err, 5e-5);
    worst.add(err, describe(c));
  }
  worst.print("delta_rule_recurrent vs cpu recurrent");
}

TEST(CudaDeltaNet, ChunkedMatchesCpuAcrossTwoCalls) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  cpu::OpContext cpu_ctx(4, 256);
  Worst worst_same, worst_rec;
  for (const DeltaCase& c : delta_cases()) {
    SCOPED_TRACE(describe(c));
    const auto [err_same, err_rec] = run_delta_case(ctx, cpu_ctx, c, Path::chunked);
    EXPECT_LT(err_same, 5e-5) << "vs cpu chunked";
    EXPECT_LT(err_rec, 2e-4) << "vs cpu recurrent";
    worst_same.add(err_same, describe(c));
    worst_rec.add(err_rec, describe(c));
  }
  worst_same.print("delta_rule_chunked vs cpu chunked");
  worst_rec.print("delta_rule_chunked vs cpu recurrent");
}

// ---------------------------------------------------------------------------------------
// Gated norm

std::vector<float> gated_norm_reference(const std::vector<float>& o, const std::vector<float>& z,
                                        const std::vector<float>& w, int64_t rows, int64_t n) {
  std::vector<float> y(o.size());
  cpu::rms_norm(o.data(), w.data(), rows, n, kEps, y.data());
  for (size_t i = 0; i < y.size(); ++i) y[i] *= z[i] / (1.0f + std::exp(-z[i]));
  return y;
}

// Speculative verify passes: the state read from one buffer and written to another gives
// the in-place result bit for bit (each thread or block reads its part before writing it,
// the same operations either way), and the input is left as it was. Then the rollback
// ops: the state after every prefix keep 0..5 of a recorded 5-token pass, from the state
// before it (conv_state_after is a copy: bit-exact; the recurrence: 5e-5 against the CPU,
// as RecurrentMatchesCpuAcrossTwoCalls). A verify pass's state after its first token, where
// the backend's rollback starts, is checked against one recurrent step.
TEST(CudaDeltaNet, SeparateStatesEqualInPlaceAndRollbackMatchesCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  cpu::OpContext cpu_ctx(4, 256);
  for (const DeltaNetShape& sh : {kReal, kSmall}) {
    for (const int64_t T : {int64_t{5}, int64_t{70}}) {
      SCOPED_TRACE(name(sh) + " T=" + std::to_string(T));
      const DeltaInputs in = random_delta_inputs(sh, T, 2.0f, static_cast<uint64_t>(T + sh.d_k));
      std::mt19937_64 rng(static_cast<uint64_t>(T * 7));
      const auto state0 = normal_vector(static_cast<size_t>(sh.n_v * sh.d_k * sh.d_v), rng, 0.5f);
      DeviceBuffer d_q = upload(in.q), d_k = upload(in.k), d_v = upload(in.v), d_g = upload(in.g);
      DeviceBuffer d_beta = upload(in.beta), d_inplace = upload(state0), d_in = upload(state0), d_out = upload(state0);
      DeviceBuffer o1(in.v.size() * sizeof(float)), o2(in.v.size() * sizeof(float));
      const size_t scratch_bytes = delta_rule_chunked_scratch_bytes(sh, T);
      DeviceBuffer d_scratch(scratch_bytes);
      sync_device();
      const float *q = d_q.as<float>(), *k = d_k.as<float>(), *v = d_v.as<float>(), *g = d_g.as<float>(),
                  *beta = d_beta.as<float>();
      if (T >= 16) {
        delta_rule_chunked(ctx.stream(), sh, T, q, k, v, g, beta, d_inplace.as<float>(), o1.as<float>(),
                           d_scratch.data(), scratch_bytes);
        delta_rule_chunked(ctx.stream(), sh, T, q, k, v, g, beta, d_in.as<float>(), d_out.as<float>(), o2.as<float>(),
                           d_scratch.data(), scratch_bytes);
      } else {
        delta_rule_recurrent(ctx.stream(), sh, T, q, k, v, g, beta, d_inplace.as<float>(), o1.as<float>());
        delta_rule_recurrent(ctx.stream(), sh, T, q, k, v, g, beta, d_in.as<float>(), d_out.as<float>(),
                             o2.as<float>());
      }
      sync_device();
      const size_t n = state0.size();
      EXPECT_EQ(download<float>(d_out, n), download<float>(d_inplace, n));
      EXPECT_EQ(download<float>(o2, in.v.size()), download<float>(o1, in.v.size()));
      EXPECT_EQ(download<float>(d_in, n), state0) << "the input state was written";
      if (T < 16) {
        // A verify pass also leaves the state after its first token, here over its input:
        // bit for bit one step's, and the pass's result unchanged.
        DeviceBuffer d_first = upload(state0), d_step = upload(state0), d_res = upload(state0);
        DeviceBuffer o3(in.v.size() * sizeof(float));
        sync_device();
        delta_rule_recurrent(ctx.stream(), sh, 1, q, k, v, g, beta, d_step.as<float>(), nullptr);
        delta_rule_recurrent(ctx.stream(), sh, T, q, k, v, g, beta, d_first.as<float>(), d_res.as<float>(),
                             o3.as<float>(), d_first.as<float>());
        sync_device();
        EXPECT_EQ(download<float>(d_first, n), download<float>(d_step, n));
        EXPECT_EQ(download<float>(d_res, n), download<float>(d_inplace, n));
        EXPECT_EQ(download<float>(o3, in.v.size()), download<float>(o1, in.v.size()));
      }
    }
  }
  // Rollback of a recorded 5-token pass, conv included.
  for (const DeltaNetShape& sh : {kReal, kSmall}) {
    const int64_t T = 5, C = channels(sh);
    const DeltaInputs in = random_delta_inputs(sh, T, 2.0f, 77);
    std::mt19937_64 rng(78);
    const auto ssm_a = normal_vector(static_cast<size_t>(sh.n_v * sh.d_k * sh.d_v), rng, 0.5f);
    const auto conv_a = normal_vector(static_cast<size_t>((kConvK - 1) * C), rng);
    const auto P = normal_vector(static_cast<size_t>(T * C), rng);
    DeviceBuffer d_q = upload(in.q), d_k = upload(in.k), d_v = upload(in.v), d_g = upload(in.g);
    DeviceBuffer d_beta = upload(in.beta), d_ssm_a = upload(ssm_a), d_conv_a = upload(conv_a), d_P = upload(P);
    DeviceBuffer d_ssm_b(ssm_a.size() * sizeof(float)), d_conv_b(conv_a.size() * sizeof(float));
    for (int64_t keep = 0; keep <= T; ++keep) {
      SCOPED_TRACE(name(sh) + " keep=" + std::to_string(keep));
      sync_device();
      conv_state_after(ctx.stream(), d_conv_a.as<float>(), d_P.as<float>(), keep, C, kConvK, d_conv_b.as<float>());
      delta_rule_recurrent(ctx.stream(), sh, keep, d_q.as<float>(), d_k.as<float>(), d_v.as<float>(), d_g.as<float>(),
                           d_beta.as<float>(), d_ssm_a.as<float>(), d_ssm_b.as<float>(), nullptr);
      sync_device();
      std::vector<float> conv_want(conv_a.size()), ssm_want = ssm_a;
      cpu::conv_state_after(conv_a.data(), P.data(), keep, C, kConvK, conv_want.data());
      cpu::delta_rule_recurrent(cpu_ctx, cpu_shape(sh), keep, in.q.data(), in.k.data(), in.v.data(), in.g.data(),
                                in.beta.data(), ssm_want.data(), nullptr);
      EXPECT_EQ(download<float>(d_conv_b, conv_a.size()), conv_want);
      EXPECT_LT(relative_error(download<float>(d_ssm_b, ssm_a.size()), ssm_want), 5e-5);
    }
  }
}

TEST(CudaDeltaNet, GatedNormMatchesCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  Worst worst;
  for (const DeltaNetShape& sh : {kReal, kSmall}) {
    for (const int64_t T : {1, 5, 64, 65, 200}) {
      SCOPED_TRACE(name(sh) + " T=" + std::to_string(T));
      std::mt19937_64 rng(static_cast<uint64_t>(T + sh.d_v));
      const int64_t rows = T * sh.n_v;
      const auto o = normal_vector(static_cast<size_t>(rows * sh.d_v), rng, 0.3f);
      const auto z = normal_vector(o.size(), rng, 2.0f);
      const auto w = normal_vector(static_cast<size_t>(sh.d_v), rng);
      const auto want = gated_norm_reference(o, z, w, rows, sh.d_v);
      DeviceBuffer d_o = upload(o), d_z = upload(z), d_w = upload(w), d_y(o.size() * sizeof(float));
      sync_device();
      gated_rms_norm(ctx.stream(), d_o.as<float>(), d_z.as<float>(), d_w.as<float>(), rows, sh.d_v, kEps,
                     d_y.as<float>());
      gated_rms_norm(ctx.stream(), d_o.as<float>(), d_z.as<float>(), d_w.as<float>(), rows, sh.d_v, kEps,
                     d_o.as<float>());  // in place, as the header allows
      sync_device();
      const double e = relative_error(download<float>(d_y, o.size()), want);
      EXPECT_LT(e, 1e-5);
      EXPECT_EQ(download<float>(d_o, o.size()), download<float>(d_y, o.size()));
      worst.add(e, name(sh) + " T=" + std::to_string(T));
    }
  }
  worst.print("gated_rms_norm");
}

// ---------------------------------------------------------------------------------------
// The whole layer between the projections, as qwen35.cpp runs it: a 65-token prompt
// (chunked) then three decode steps (recurrent), both states carried.

TEST(CudaDeltaNet, LayerPromptThenDecodeMatchesCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  cpu::OpContext cpu_ctx(4, 256);
  const DeltaNetShape sh = kReal;
  const int64_t C = channels(sh), Ck = sh.n_k * sh.d_k, Cv = sh.n_v * sh.d_v, nv = sh.n_v;
  const int64_t steps[] = {65, 1, 1, 1};
  const int64_t T = 68;
  std::mt19937_64 rng(2024);
  const auto P = normal_vector(static_cast<size_t>(T * C), rng);
  const auto z = normal_vector(static_cast<size_t>(T * Cv), rng);
  const auto taps = normal_vector(static_cast<size_t>(C * kConvK), rng, 0.5f);
  const auto norm_w = normal_vector(static_cast<size_t>(sh.d_v), rng, 0.2f);
  GateInputs gates = random_gates(sh, T, rng);
  for (float& x : gates.alpha) x *= 0.25f;  // decays of a trained model's order, not saturated

  // CPU: qwen35.cpp's sequence of ops.
  std::vector<float> conv_state(static_cast<size_t>((kConvK - 1) * C), 0.0f);
  std::vector<float> ssm_state(static_cast<size_t>(nv * sh.d_k * sh.d_v), 0.0f);
  std::vector<float> conv(P.size()), o(z.size());
  std::vector<float> want;
  {
    int64_t t0 = 0;
    for (const int64_t n : steps) {
      cpu::conv1d_silu(P.data() + t0 * C, n, C, taps.data(), kConvK, conv_state.data(), conv.data() + t0 * C);
      t0 += n;
    }
    const PrepRef prep = prep_reference(sh, T, conv, gates.b, gates.alpha, gates.a, gates.dt_bias);
    t0 = 0;
    for (const int64_t n : steps) {
      const float *q = prep.q.data() + t0 * Ck, *k = prep.k.data() + t0 * Ck, *v = prep.v.data() + t0 * Cv;
      const float *g = prep.g.data() + t0 * nv, *beta = prep.beta.data() + t0 * nv;
      if (n >= 16) {
        cpu::delta_rule_chunked(cpu_ctx, cpu_shape(sh), n, q, k, v, g, beta, ssm_state.data(), o.data() + t0 * Cv);
      } else {
        cpu::delta_rule_recurrent(cpu_ctx, cpu_shape(sh), n, q, k, v, g, beta, ssm_state.data(), o.data() + t0 * Cv);
      }
      t0 += n;
    }
    want = gated_norm_reference(o, z, norm_w, T * nv, sh.d_v);
  }

  // GPU: the same per call, every buffer sized once for the largest call.
  DeviceBuffer d_P = upload(P), d_z = upload(z), d_taps = upload(taps), d_norm = upload(norm_w);
  DeviceBuffer d_b = upload(gates.b), d_alpha = upload(gates.alpha), d_a = upload(gates.a), d_dt = upload(gates.dt_bias);
  DeviceBuffer d_conv_state = upload(std::vector<float>((kConvK - 1) * C, 0.0f));
  DeviceBuffer d_ssm_state = upload(std::vector<float>(ssm_state.size(), 0.0f));
  DeviceBuffer d_conv(P.size() * 4), d_q(static_cast<size_t>(T * Ck) * 4), d_k(static_cast<size_t>(T * Ck) * 4);
  DeviceBuffer d_v(z.size() * 4), d_beta(gates.b.size() * 4), d_g(gates.b.size() * 4), d_o(z.size() * 4);
  DeviceBuffer d_y(z.size() * 4);
  const size_t scratch_bytes = delta_rule_chunked_scratch_bytes(sh, 65);
  DeviceBuffer d_scratch(scratch_bytes);
  sync_device();
  int64_t t0 = 0;
  for (const int64_t n : steps) {
    cudaStream_t s = ctx.stream();
    float *conv_t = d_conv.as<float>() + t0 * C, *q = d_q.as<float>() + t0 * Ck, *k = d_k.as<float>() + t0 * Ck;
    float *v = d_v.as<float>() + t0 * Cv, *beta = d_beta.as<float>() + t0 * nv, *g = d_g.as<float>() + t0 * nv;
    float* o_t = d_o.as<float>() + t0 * Cv;
    conv1d_silu(s, d_P.as<float>() + t0 * C, n, C, d_taps.as<float>(), kConvK, d_conv_state.as<float>(), conv_t);
    delta_net_prep(s, sh, n, conv_t, d_b.as<float>() + t0 * nv, d_alpha.as<float>() + t0 * nv, d_a.as<float>(),
                   d_dt.as<float>(), kEps, q, k, v, beta, g);
    if (n >= 16) {
      delta_rule_chunked(s, sh, n, q, k, v, g, beta, d_ssm_state.as<float>(), o_t, d_scratch.data(), scratch_bytes);
    } else {
      delta_rule_recurrent(s, sh, n, q, k, v, g, beta, d_ssm_state.as<float>(), o_t);
    }
    gated_rms_norm(s, o_t, d_z.as<float>() + t0 * Cv, d_norm.as<float>(), n * nv, sh.d_v, kEps,
                   d_y.as<float>() + t0 * Cv);
    t0 += n;
  }
  sync_device();
  const double e_y = relative_error(download<float>(d_y, want.size()), want);
  const double e_state = relative_error(download<float>(d_ssm_state, ssm_state.size()), ssm_state);
  EXPECT_LT(e_y, 2e-4);
  EXPECT_LT(e_state, 2e-4);
  EXPECT_EQ(download<float>(d_conv_state, conv_state.size()), conv_state);
  std::printf("[ measured ] DeltaNet layer: y %.3g, ssm state %.3g\n", e_y, e_state);
}

// ---------------------------------------------------------------------------------------
// Argument checks run on the host before any launch, so they need no device (as the
// foundation's FailedCallNamesTheCall): the pointers below are never dereferenced.

std::string error_of(const auto& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CudaDeltaNet, BadArgumentsAreNamed) {
  float* fake = reinterpret_cast<float*>(uintptr_t{1} << 20);  // aligned, never touched
  const size_t big = size_t{1} << 30;
  EXPECT_NE(error_of([&] { conv1d_silu(nullptr, fake, 4, 8192, fake, 9, fake, fake + (1 << 16)); })
                .find("conv kernel size 9"), std::string::npos);
  EXPECT_NE(error_of([&] { conv1d_silu(nullptr, fake, 4, 8192, fake, 4, fake + (1 << 20), fake + 16); })
                .find("out overlaps P"), std::string::npos);
  EXPECT_NE(error_of([&] { delta_rule_recurrent(nullptr, {16, 32, 96, 128}, 1, fake, fake, fake, fake, fake, fake, fake); })
                .find("d_k = 96"), std::string::npos);
  EXPECT_NE(error_of([&] { delta_rule_recurrent(nullptr, kReal, 1, fake + 1, fake, fake, fake, fake, fake + (1 << 26), fake); })
                .find("q must be 16-byte aligned"), std::string::npos);
  EXPECT_NE(error_of([&] { delta_rule_chunked(nullptr, {16, 32, 128, 48}, 1, fake, fake, fake, fake, fake, fake, fake,
                                              fake, big); })
                .find("d_v = 48"), std::string::npos);
  EXPECT_NE(error_of([&] { delta_rule_chunked(nullptr, kReal, 65, fake, fake, fake, fake, fake, fake + (1 << 26), fake,
                                              fake, delta_rule_chunked_scratch_bytes(kReal, 64)); })
                .find("scratch of"), std::string::npos);
  EXPECT_NE(error_of([&] { delta_net_prep(nullptr, kReal, 1, nullptr, fake, fake, fake, fake, kEps, fake, fake, fake,
                                          fake, fake); })
                .find("conv is null"), std::string::npos);
  EXPECT_NE(error_of([&] { gated_rms_norm(nullptr, fake, fake, fake, 32, 0, kEps, fake); }).find("row length 0"),
            std::string::npos);
  // T = 0 is a no-op that touches nothing.
  EXPECT_EQ(error_of([&] { delta_rule_chunked(nullptr, kReal, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              nullptr, nullptr, 0); }), "(no error)");
  // Scratch grows by whole chunks: 65 tokens need two.
  EXPECT_EQ(delta_rule_chunked_scratch_bytes(kReal, 65), 2 * delta_rule_chunked_scratch_bytes(kReal, 64));
}

}  // namespace
}  // namespace tandem::cuda
