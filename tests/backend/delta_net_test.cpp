// Gated DeltaNet: the chunked form equals the token-by-token recurrence for any length and
// any split into calls; the recurrence equals the closed form S_t = l(I - b k k^T)S + b k v^T;
// the conv with carried state equals one pass over the whole sequence. Speculative
// rollback: the ops with a separate input state equal the in-place ones bit for bit (and
// leave the input as it was, or hold the state after the first token where asked), and the
// rollback op rebuilds the state of any prefix of a recorded pass bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/delta_net.h"
#include "core/error.h"

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
    using Rule = void (*)(OpContext&, const DeltaNetShape&, int64_t, const float*, const float*, const float*,
                          const float*, const float*, float*, float*);
    const Rule run = (i % 2 == 0) ? static_cast<Rule>(delta_rule_recurrent) : [](OpContext& c, const DeltaNetShape& s, int64_t t,
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

// d_v 3 takes the portable step; 8, 72 and 128 the AVX2 one (where the CPU has it) with each
// of its column blocks (one vector; 64 and 32 columns with a one-vector tail; 128, Qwen3.5's
// heads). The state starts non-zero and comes from a separate buffer, as in a verify pass.
TEST(DeltaNet, RecurrenceMatchesClosedForm) {
  for (const int64_t dv : {3, 8, 72, 128}) {
    SCOPED_TRACE("d_v=" + std::to_string(dv));
    OpContext ctx(2, dv);
    const DeltaNetShape sh{1, 2, 16, dv};
    const int64_t T = 6, block = sh.d_k * dv;
    const Inputs in = random_inputs(sh, T, 5 + static_cast<uint64_t>(dv));
    std::vector<float> S_in(static_cast<size_t>(sh.n_v * block)), S(S_in.size()), first(S_in.size());
    std::mt19937_64 rng(11);
    std::normal_distribution<float> normal(0.0f, 0.5f);
    for (float& x : S_in) x = normal(rng);
    std::vector<float> out(static_cast<size_t>(T * sh.n_v * dv));
    delta_rule_recurrent(ctx, sh, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(), S_in.data(),
                         S.data(), out.data(), first.data());
    // Closed form in double: S = l (I - b k k^T) S + b k v^T, o = S^T q.
    for (int64_t j = 0; j < sh.n_v; ++j) {
      std::vector<double> R(S_in.begin() + j * block, S_in.begin() + (j + 1) * block);
      const int64_t kh = j % sh.n_k;
      for (int64_t t = 0; t < T; ++t) {
        const float* k = in.k.data() + (t * sh.n_k + kh) * sh.d_k;
        const float* q = in.q.data() + (t * sh.n_k + kh) * sh.d_k;
        const float* v = in.v.data() + (t * sh.n_v + j) * dv;
        const double l = std::exp(static_cast<double>(in.g[t * sh.n_v + j])), b = in.beta[t * sh.n_v + j];
        std::vector<double> next(static_cast<size_t>(block));
        for (int64_t i = 0; i < sh.d_k; ++i) {
          for (int64_t c = 0; c < dv; ++c) {
            double proj = 0;  // ((I - b k k^T) S)[i][c]
            for (int64_t m = 0; m < sh.d_k; ++m) proj += ((i == m ? 1.0 : 0.0) - b * k[i] * k[m]) * R[m * dv + c];
            next[i * dv + c] = l * proj + b * k[i] * v[c];
          }
        }
        R = next;
        for (int64_t c = 0; c < dv; ++c) {
          double o = 0;
          for (int64_t i = 0; i < sh.d_k; ++i) o += R[i * dv + c] * q[i];
          ASSERT_NEAR(out[(t * sh.n_v + j) * dv + c], o, 1e-4) << "head " << j << " t=" << t << " c=" << c;
        }
        if (t == 0) {
          for (int64_t e = 0; e < block; ++e) ASSERT_NEAR(first[j * block + e], R[e], 1e-4) << "state after the first token";
        }
      }
      for (int64_t e = 0; e < block; ++e) ASSERT_NEAR(S[j * block + e], R[e], 1e-4) << "head " << j << " element " << e;
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

std::vector<float> random_vector(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const size_t kStateSize = static_cast<size_t>(kShape.n_v * kShape.d_k * kShape.d_v);

// Recurrent (decode-sized) and chunked (prompt-sized, two chunks) passes from a non-zero
// state: reading it from one buffer and writing another gives the in-place result to the
// last bit, and the input buffer is untouched (a verify pass keeps the state before it).
TEST(DeltaNetRollback, SeparateStateBuffersEqualInPlaceBitForBit) {
  OpContext ctx(2, 64);
  for (const bool chunked : {false, true}) {
    const int64_t T = chunked ? 70 : 5;
    SCOPED_TRACE(chunked ? "chunked" : "recurrent");
    const Inputs in = random_inputs(kShape, T, 7 + T);
    const std::vector<float> before = random_vector(kStateSize, 11, 0.3f);
    std::vector<float> in_place = before, state_in = before, state_out(kStateSize, 12345.0f);
    std::vector<float> o1(in.v.size()), o2(in.v.size());
    if (chunked) {
      delta_rule_chunked(ctx, kShape, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                         in_place.data(), o1.data(), 64);
      delta_rule_chunked(ctx, kShape, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                         state_in.data(), state_out.data(), o2.data(), 64);
    } else {
      delta_rule_recurrent(ctx, kShape, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                           in_place.data(), o1.data());
      delta_rule_recurrent(ctx, kShape, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                           state_in.data(), state_out.data(), o2.data());
    }
    EXPECT_TRUE(same_bits(state_out, in_place)) << "max diff " << max_diff(state_out, in_place);
    EXPECT_TRUE(same_bits(o2, o1)) << "max diff " << max_diff(o2, o1);
    EXPECT_TRUE(same_bits(state_in, before)) << "the input state was written";
    EXPECT_GT(max_diff(in_place, before), 1e-3f) << "the pass did not move the state";
  }
}

TEST(DeltaNetRollback, ConvWithSeparateStateEqualsInPlaceBitForBit) {
  const int64_t C = 6, K = 4;
  const std::vector<float> taps = random_vector(static_cast<size_t>(C * K), 21);
  const std::vector<float> before = random_vector(static_cast<size_t>((K - 1) * C), 22);
  for (const int64_t T : {1, 2, 3, 9}) {  // shorter than K-1 (part of the old state stays), and longer
    SCOPED_TRACE("T=" + std::to_string(T));
    const std::vector<float> P = random_vector(static_cast<size_t>(T * C), 23 + T);
    std::vector<float> in_place = before, state_in = before, state_out(before.size(), -7.0f);
    std::vector<float> o1(P.size()), o2(P.size());
    conv1d_silu(P.data(), T, C, taps.data(), K, in_place.data(), o1.data());
    conv1d_silu(P.data(), T, C, taps.data(), K, state_in.data(), state_out.data(), o2.data());
    EXPECT_TRUE(same_bits(state_out, in_place));
    EXPECT_TRUE(same_bits(o2, o1));
    EXPECT_TRUE(same_bits(state_in, before)) << "the input state was written";
  }
}

// An f32 weight {n_in, n_out} over `values` (which must outlive it).
Tensor f32_weight(const std::vector<float>& values, int64_t n_in, int64_t n_out) {
  Tensor t;
  t.name = "w";
  t.type = DType::F32;
  t.ne[0] = n_in;
  t.ne[1] = n_out;
  t.n_dims = 2;
  t.data = reinterpret_cast<const uint8_t*>(values.data());
  return t;
}

// A verify pass writes, besides its result, the state after its first token, into the
// buffer it read the state from (each head's block read before it is overwritten): bit for
// bit what one recurrent step leaves, and the pass's own result unchanged by it.
TEST(DeltaNetRollback, StateAfterTheFirstTokenWrittenOverTheInput) {
  OpContext ctx(2, 64);
  const int64_t T = 5;
  const Inputs in = random_inputs(kShape, T, 41);
  const std::vector<float> before = random_vector(kStateSize, 42, 0.3f);
  std::vector<float> want_first = before, want_all = before, scratch(in.v.size()), o_want(in.v.size());
  delta_rule_recurrent(ctx, kShape, 1, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                       want_first.data(), scratch.data());
  delta_rule_recurrent(ctx, kShape, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                       want_all.data(), o_want.data());
  std::vector<float> buffer = before, result(kStateSize, 7.0f), o(in.v.size());
  delta_rule_recurrent(ctx, kShape, T, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                       buffer.data(), result.data(), o.data(), buffer.data());
  EXPECT_TRUE(same_bits(buffer, want_first)) << "max diff " << max_diff(buffer, want_first);
  EXPECT_TRUE(same_bits(result, want_all)) << "max diff " << max_diff(result, want_all);
  EXPECT_TRUE(same_bits(o, o_want));
  EXPECT_GT(max_diff(want_first, want_all), 1e-3f) << "the later tokens did not move the state";
}

// The same through the backend's block, for a decode-sized and a prompt-sized verify pass
// (the second runs its first token alone, then the chunked form): ssm_first gets the state
// after one token, ssm_state the state after all of them (within chunked-vs-recurrent
// round-off for the long pass), and the input's conv state is left as it was.
TEST(DeltaNetRollback, VerifyBlockKeepsTheStateAfterItsFirstToken) {
  OpContext ctx(2, 64);
  CpuBackend backend(ctx);
  const DeltaNetShape sh = kShape;
  const int64_t D = 12, K = 4, Ck = sh.n_k * sh.d_k, Cv = sh.n_v * sh.d_v, C = 2 * Ck + Cv;
  const std::vector<float> qkv = random_vector(static_cast<size_t>(D * C), 51, 0.3f),
                           gate = random_vector(static_cast<size_t>(D * Cv), 52, 0.3f),
                           beta = random_vector(static_cast<size_t>(D * sh.n_v), 53, 0.3f),
                           alpha = random_vector(static_cast<size_t>(D * sh.n_v), 54, 0.3f),
                           wout = random_vector(static_cast<size_t>(Cv * D), 55, 0.3f);
  DeltaNetWeights w;
  w.qkv = f32_weight(qkv, D, C);
  w.gate = f32_weight(gate, D, Cv);
  w.beta = f32_weight(beta, D, sh.n_v);
  w.alpha = f32_weight(alpha, D, sh.n_v);
  w.out = f32_weight(wout, Cv, D);
  w.dt_bias = random_vector(static_cast<size_t>(sh.n_v), 56, 0.3f);
  w.a = random_vector(static_cast<size_t>(sh.n_v), 57, 0.3f);
  for (float& x : w.a) x = -std::fabs(x);
  w.conv_taps = random_vector(static_cast<size_t>(C * K), 58, 0.5f);
  w.norm = random_vector(static_cast<size_t>(sh.d_v), 59, 0.3f);
  w.conv_kernel = K;
  for (const int64_t T : {int64_t{5}, int64_t{40}}) {
    SCOPED_TRACE("T=" + std::to_string(T));
    backend.reserve_delta_net(T, sh, K);
    const std::vector<float> a = random_vector(static_cast<size_t>(T * D), 60 + T, 1.0f);
    const std::vector<float> conv0 = random_vector(static_cast<size_t>((K - 1) * C), 61, 0.5f);
    const std::vector<float> ssm0 = random_vector(kStateSize, 62, 0.3f);
    // References: the first token alone, and all T, each from copies of the same state.
    std::vector<float> conv_1 = conv0, ssm_1 = ssm0, conv_all = conv0, ssm_all = ssm0;
    std::vector<float> out_1(static_cast<size_t>(D)), out_all(static_cast<size_t>(T * D));
    const DeltaNetSequence one{conv_1.data(), ssm_1.data(), 1};
    backend.delta_net(w, sh, a.data(), std::span<const DeltaNetSequence>(&one, 1), out_1.data());
    const DeltaNetSequence all{conv_all.data(), ssm_all.data(), T};
    backend.delta_net(w, sh, a.data(), std::span<const DeltaNetSequence>(&all, 1), out_all.data());
    // The verify pass: reads conv_in / ssm_in, writes the state after the first token over ssm_in.
    std::vector<float> conv_in = conv0, ssm_in = ssm0;
    std::vector<float> conv_out(conv0.size(), 5.0f), ssm_out(kStateSize, 5.0f), out(static_cast<size_t>(T * D));
    std::vector<float> rec(static_cast<size_t>(T * (C + 2 * Ck + Cv + 2 * sh.n_v)));
    float* at = rec.data();
    auto take = [&](int64_t width) { return std::exchange(at, at + T * width); };
    const DeltaNetRecord record{take(C), take(Ck), take(Ck), take(Cv), take(sh.n_v), take(sh.n_v)};
    const DeltaNetSequence verify{conv_out.data(), ssm_out.data(), T, conv_in.data(), ssm_in.data(), &record,
                                  ssm_in.data()};
    backend.delta_net(w, sh, a.data(), std::span<const DeltaNetSequence>(&verify, 1), out.data());
    EXPECT_TRUE(same_bits(ssm_in, ssm_1)) << "state after the first token, max diff " << max_diff(ssm_in, ssm_1);
    EXPECT_TRUE(same_bits(conv_in, conv0)) << "the conv state before the pass was written";
    EXPECT_TRUE(same_bits(conv_out, conv_all));
    if (T < 16) {  // the same float operations as the plain pass
      EXPECT_TRUE(same_bits(ssm_out, ssm_all)) << "max diff " << max_diff(ssm_out, ssm_all);
      EXPECT_TRUE(same_bits(out, out_all));
    } else {  // one recurrent step, then the chunked form over the rest
      EXPECT_LE(max_diff(ssm_out, ssm_all), 1e-4f);
      EXPECT_LE(max_diff(out, out_all), 1e-4f);
    }
    EXPECT_GT(max_diff(ssm_1, ssm_all), 1e-3f) << "the later tokens did not move the state";
  }
}

// A recorded pass of T positions from state A; rollback(keep) for every keep 1..T, started
// from the state after the first position (what a verify pass leaves in its input buffer),
// must give, bit for bit, what the recurrent form and the conv leave after only the first
// keep positions from A (the same float operations in the same order). Keeping nothing, or
// buffers that alias where they must not, is refused.
TEST(DeltaNetRollback, RollbackOpEqualsTheRecurrentFormOnThePrefix) {
  OpContext ctx(2, 64);
  CpuBackend backend(ctx);
  const DeltaNetShape sh = kShape;
  const int64_t T = 6, K = 4;
  const int64_t Ck = sh.n_k * sh.d_k, Cv = sh.n_v * sh.d_v, C = 2 * Ck + Cv;
  const Inputs in = random_inputs(sh, T, 31);
  const std::vector<float> P = random_vector(static_cast<size_t>(T * C), 32);
  const std::vector<float> conv_a = random_vector(static_cast<size_t>((K - 1) * C), 33);
  const std::vector<float> ssm_a = random_vector(kStateSize, 34, 0.3f);
  std::vector<float> rec_P = P, rec_q = in.q, rec_k = in.k, rec_v = in.v, rec_g = in.g, rec_beta = in.beta;
  const DeltaNetRecord record{rec_P.data(), rec_q.data(), rec_k.data(), rec_v.data(), rec_g.data(), rec_beta.data()};
  const std::vector<float> taps = random_vector(static_cast<size_t>(C * K), 35);
  std::vector<float> scratch(static_cast<size_t>(T * std::max(C, Cv)));
  std::vector<float> ssm_first = ssm_a;  // the state after position 0
  delta_rule_recurrent(ctx, sh, 1, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                       ssm_first.data(), scratch.data());
  for (int64_t keep = 1; keep <= T; ++keep) {
    SCOPED_TRACE("keep=" + std::to_string(keep));
    std::vector<float> conv_b(conv_a.size(), 99.0f), ssm_b(ssm_a.size(), 99.0f), ssm_in = ssm_first;
    // Keeping only the first position leaves the state where it is (ssm_out is ssm_in).
    float* ssm_out = keep == 1 ? ssm_in.data() : ssm_b.data();
    backend.delta_net_rollback(sh, K, {conv_a.data(), ssm_in.data(), conv_b.data(), ssm_out, record, keep});
    // The reference: the prefix alone, in place from copies of A.
    std::vector<float> conv_want = conv_a, ssm_want = ssm_a;
    conv1d_silu(P.data(), keep, C, taps.data(), K, conv_want.data(), scratch.data());
    delta_rule_recurrent(ctx, sh, keep, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                         ssm_want.data(), scratch.data());
    const std::vector<float> got(ssm_out, ssm_out + kStateSize);
    EXPECT_TRUE(same_bits(got, ssm_want)) << "recurrent state, max diff " << max_diff(got, ssm_want);
    EXPECT_TRUE(same_bits(conv_b, conv_want)) << "conv state, max diff " << max_diff(conv_b, conv_want);
    EXPECT_TRUE(same_bits(ssm_in, ssm_first) || keep == 1) << "the input state was written";
  }
  std::vector<float> conv_b(conv_a.size()), ssm_b(ssm_a.size()), ssm_in = ssm_first;
  EXPECT_THROW(backend.delta_net_rollback(sh, K, {conv_a.data(), ssm_in.data(), conv_b.data(), ssm_b.data(), record, 0}),
               Error);
  EXPECT_THROW(backend.delta_net_rollback(sh, K, {conv_a.data(), ssm_in.data(), conv_b.data(), ssm_in.data(), record, 3}),
               Error);
  EXPECT_THROW(backend.delta_net_rollback(sh, K, {conv_a.data(), ssm_in.data(), conv_b.data(), ssm_b.data(), record, 1}),
               Error);
}

}  // namespace
}  // namespace tandem::cpu
