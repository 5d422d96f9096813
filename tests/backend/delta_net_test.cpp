// Gated DeltaNet: the chunked form equals the token-by-token recurrence for any length and
// any split into calls; the recurrence equals the closed form S_t = l(I - b k k^T)S + b k v^T;
// the conv with carried state equals one pass over the whole sequence.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/delta_net.h"

namespace tandem::cpu {
namespace {

struct Inputs {
  std::vector<float> q, k, v, g, beta;
};

Inputs random_inputs(const DeltaNetShape& sh, int64_t T, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  Inputs in;
  auto normalised = [&](std::vector<float>& x, int64_t heads, int64_t d, float scale) {
    x.resize(static_cast<size_t>(T * heads * d));
    for (int64_t r = 0; r < T * heads; ++r) {
      float norm = 0;
      for (int64_t i = 0; i < d; ++i) norm += (x[r * d + i] = normal(rng)) * x[r * d + i];
      for (int64_t i = 0; i < d; ++i) x[r * d + i] *= scale / std::sqrt(norm);
    }
  };
  normalised(in.q, sh.n_k, sh.d_k, 1.0f / std::sqrt(static_cast<float>(sh.d_k)));
  normalised(in.k, sh.n_k, sh.d_k, 1.0f);
  in.v.resize(static_cast<size_t>(T * sh.n_v * sh.d_v));
  for (float& x : in.v) x = normal(rng);
  in.g.resize(static_cast<size_t>(T * sh.n_v));
  in.beta.resize(in.g.size());
  for (float& x : in.g) x = -2.0f * unit(rng);  // decay in (e^-2, 1]
  for (float& x : in.beta) x = unit(rng);
  return in;
}

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

const DeltaNetShape kShape{2, 4, 16, 8};  // 4 value heads over 2 key heads (tiled)

TEST(DeltaNet, ChunkedEqualsRecurrentForManyLengths) {
  OpContext ctx(2, 64);
  for (int64_t T : {1, 2, 5, 63, 64, 65, 130, 200}) {
    const Inputs in = random_inputs(kShape, T, static_cast<uint64_t>(T));
    const size_t state_size = static_cast<size_t>(kShape.n_v * kShape.d_k * kShape.d_v);
    std::vector<float> s1(state_size, 0.0f), s2(state_size, 0.0f);
    std::vector<float> o1(in.v.size()), o2(in.v.size());
    delta_rule_recurrent(ctx, kShape, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                         s1.data(), o1.data());
    delta_rule_chunked(ctx, kShape, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                       s2.data(), o2.data(), 64);
    EXPECT_LT(max_diff(o1, o2), 1e-4f) << "T=" << T;
    EXPECT_LT(max_diff(s1, s2), 1e-4f) << "T=" << T;
  }
}

TEST(DeltaNet, SplitIntoCallsEqualsOneCall) {
  OpContext ctx(2, 64);
  const int64_t T = 150;
  const Inputs in = random_inputs(kShape, T, 99);
  const size_t state_size = static_cast<size_t>(kShape.n_v * kShape.d_k * kShape.d_v);
  std::vector<float> whole_state(state_size, 0.0f), whole_out(in.v.size());
  delta_rule_chunked(ctx, kShape, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                     whole_state.data(), whole_out.data(), 16);
  std::vector<float> state(state_size, 0.0f), out(in.v.size());
  const int64_t cuts[] = {0, 7, 8, 70, 71, 150};
  for (int i = 0; i + 1 < 6; ++i) {
    const int64_t a = cuts[i], n = cuts[i + 1] - a;
    auto run = (i % 2 == 0) ? delta_rule_recurrent : [](OpContext& c, const DeltaNetShape& s, int64_t t,
        const float* q, const float* k, const float* v, const float* g, const float* b, float* st, float* o) {
      delta_rule_chunked(c, s, t, q, k, v, g, b, st, o, 64);
    };
    run(ctx, kShape, n, in.q.data() + a * kShape.n_k * kShape.d_k, in.k.data() + a * kShape.n_k * kShape.d_k,
        in.v.data() + a * kShape.n_v * kShape.d_v, in.g.data() + a * kShape.n_v, in.beta.data() + a * kShape.n_v,
        state.data(), out.data() + a * kShape.n_v * kShape.d_v);
  }
  EXPECT_LT(max_diff(out, whole_out), 1e-4f);
  EXPECT_LT(max_diff(state, whole_state), 1e-4f);
}

TEST(DeltaNet, RecurrenceMatchesClosedForm) {
  OpContext ctx(1, 64);
  const DeltaNetShape sh{1, 1, 4, 3};
  const int64_t T = 6;
  const Inputs in = random_inputs(sh, T, 5);
  std::vector<float> S(12, 0.0f), out(static_cast<size_t>(T * 3));
  delta_rule_recurrent(ctx, sh, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(), S.data(), out.data());
  // Closed form in double: S = l (I - b k k^T) S + b k v^T, o = S^T q.
  std::vector<double> R(12, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    const float* k = in.k.data() + t * 4;
    const float* q = in.q.data() + t * 4;
    const float* v = in.v.data() + t * 3;
    const double l = std::exp(static_cast<double>(in.g[t])), b = in.beta[t];
    std::vector<double> next(12);
    for (int i = 0; i < 4; ++i) {
      for (int c = 0; c < 3; ++c) {
        double proj = 0;  // ((I - b k k^T) S)[i][c]
        for (int m = 0; m < 4; ++m) proj += ((i == m ? 1.0 : 0.0) - b * k[i] * k[m]) * R[m * 3 + c];
        next[i * 3 + c] = l * proj + b * k[i] * v[c];
      }
    }
    R = next;
    for (int c = 0; c < 3; ++c) {
      double o = 0;
      for (int i = 0; i < 4; ++i) o += R[i * 3 + c] * q[i];
      EXPECT_NEAR(out[t * 3 + c], o, 1e-5) << "t=" << t << " c=" << c;
    }
  }
}

TEST(DeltaNet, ConvWithCarriedStateEqualsWholeSequence) {
  const int64_t C = 5, K = 4, T = 11;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> P(T * C), taps(C * K);
  for (float& x : P) x = normal(rng);
  for (float& x : taps) x = normal(rng);
  std::vector<float> whole(T * C), state((K - 1) * C, 0.0f);
  conv1d_silu(P.data(), T, C, taps.data(), K, state.data(), whole.data());
  // Direct definition with zero history.
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < C; ++c) {
      float s = 0;
      for (int64_t j = 0; j < K; ++j) {
        const int64_t r = t - (K - 1) + j;
        if (r >= 0) s += taps[c * K + j] * P[r * C + c];
      }
      EXPECT_NEAR(whole[t * C + c], s / (1 + std::exp(-s)), 1e-6f);
    }
  }
  std::vector<float> pieces(T * C), st((K - 1) * C, 0.0f);
  const int64_t cuts[] = {0, 1, 3, 4, 11};  // pieces shorter than K-1 too
  for (int i = 0; i + 1 < 5; ++i) {
    conv1d_silu(P.data() + cuts[i] * C, cuts[i + 1] - cuts[i], C, taps.data(), K, st.data(), pieces.data() + cuts[i] * C);
  }
  EXPECT_LT(max_diff(pieces, whole), 1e-6f);
  EXPECT_LT(max_diff(st, state), 1e-7f);
}

}  // namespace
}  // namespace tandem::cpu
