// CPU ops against double-precision references.
//
// Attention (flash_attention.cpp: tiled, online softmax) against the textbook form: scores for every cached key, max-subtracted softmax over all of them,
// weighted sum of values. Shapes cover token tiles cut anywhere (1, 7, 8, 9, 40 tokens),
// prompts that start after cached positions, key counts around the 32-key tile, group
// sizes 1/7/8 (Qwen2.5-0.5B has 7 query heads per KV head), head sizes with and without a
// remainder of the 32-float value loop, f32 and f16 caches (the reference reads the
// same f16 values), and long contexts whose keys are split across jobs. Peaky softmaxes (scores in the tens) make every running-max rescale
// matter.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "core/half.h"

namespace tandem::cpu {
namespace {

struct Case {
  int64_t n_tokens, first_pos, n_head_kv, group, head_dim;
  DType cache;
  float q_scale;
  int64_t gap = 0;  // tokens after the first sit this much further on (a tile whose rows see very different key counts)
};

// Cache of n_pos rows x n_head_kv heads in `type`; `exact` gets the values the cache holds.
std::vector<uint8_t> make_cache(DType type, int64_t n_pos, int64_t width, std::mt19937& rng,
                                std::vector<double>& exact) {
  std::normal_distribution<float> normal;
  const size_t elem = type == DType::F32 ? 4 : 2;
  std::vector<uint8_t> bytes(static_cast<size_t>(n_pos * width) * elem);
  exact.resize(static_cast<size_t>(n_pos * width));
  for (size_t i = 0; i < exact.size(); ++i) {
    const float x = normal(rng);
    if (type == DType::F32) {
      std::memcpy(bytes.data() + 4 * i, &x, 4);
      exact[i] = x;
    } else {
      const uint16_t h = f32_to_f16(x);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
      exact[i] = f16_to_f32(h);
    }
  }
  return bytes;
}

TEST(Attention, TiledOnlineSoftmaxMatchesTheTextbookForm) {
  const Case cases[] = {
      {1, 0, 2, 7, 64, DType::F32, 1.0f},     {7, 0, 2, 7, 64, DType::F16, 1.0f},
      {8, 0, 1, 8, 128, DType::F32, 1.0f},    {9, 23, 2, 7, 64, DType::F16, 4.0f},
      {40, 0, 2, 8, 256, DType::F16, 1.0f},   {40, 31, 4, 1, 80, DType::F32, 6.0f},
      {1, 300, 2, 7, 64, DType::F16, 6.0f},   {5, 95, 1, 8, 128, DType::F32, 3.0f},
      {33, 64, 2, 2, 96, DType::F32, 1.0f},
      // Long contexts with fewer (tile, KV head) jobs than two per thread: the keys are split
      // (2 to 4 runs here, on 2 threads) and the runs' partial sums merged; in the last, the
      // first token's keys all lie in the first run.
      {1, 1500, 1, 8, 64, DType::F16, 6.0f},  {5, 1200, 1, 7, 64, DType::F32, 4.0f},
      {1, 700, 1, 2, 128, DType::F32, 1.0f},  {2, 40, 1, 7, 64, DType::F16, 6.0f, 1460},
  };
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (const Case& c : cases) {
    const int64_t n_head = c.n_head_kv * c.group, d = c.head_dim;
    const int64_t n_pos = c.first_pos + c.n_tokens + c.gap;
    const int64_t width = c.n_head_kv * d;
    std::vector<double> k_exact, v_exact;
    std::vector<uint8_t> k_bytes = make_cache(c.cache, n_pos, width, rng, k_exact);
    std::vector<uint8_t> v_bytes = make_cache(c.cache, n_pos, width, rng, v_exact);
    const size_t row_bytes = static_cast<size_t>(width) * (c.cache == DType::F32 ? 4 : 2);
    const KvView k{k_bytes.data(), c.cache, row_bytes}, v{v_bytes.data(), c.cache, row_bytes};
    std::vector<float> q(static_cast<size_t>(c.n_tokens * n_head * d));
    for (float& x : q) x = normal(rng) * c.q_scale;
    std::vector<int32_t> positions(static_cast<size_t>(c.n_tokens));
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      positions[static_cast<size_t>(t)] = static_cast<int32_t>(c.first_pos + t + (t > 0 ? c.gap : 0));
    }

    OpContext ctx(2, 256);
    ctx.reserve_context(2048, c.group);
    std::vector<float> out(q.size(), NAN);
    attention(ctx, q.data(), c.n_tokens, n_head, c.n_head_kv, d, k, v, positions, out.data());

    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    double worst = 0;
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      const int64_t n_keys = positions[static_cast<size_t>(t)] + 1;
      for (int64_t h = 0; h < n_head; ++h) {
        const int64_t g = h / c.group;
        const float* qh = q.data() + (t * n_head + h) * d;
        std::vector<double> p(static_cast<size_t>(n_keys));
        double max = -INFINITY, sum = 0;
        for (int64_t s = 0; s < n_keys; ++s) {
          double dot = 0;
          for (int64_t i = 0; i < d; ++i) dot += qh[i] * k_exact[static_cast<size_t>(s * width + g * d + i)];
          p[static_cast<size_t>(s)] = dot * scale;
          max = std::max(max, dot * scale);
        }
        for (double& x : p) sum += (x = std::exp(x - max));
        for (int64_t i = 0; i < d; ++i) {
          double expected = 0;
          for (int64_t s = 0; s < n_keys; ++s) {
            expected += p[static_cast<size_t>(s)] / sum * v_exact[static_cast<size_t>(s * width + g * d + i)];
          }
          const double got = out[static_cast<size_t>((t * n_head + h) * d + i)];
          worst = std::max(worst, std::fabs(got - expected));
          ASSERT_NEAR(got, expected, 2e-5) << "tokens " << c.n_tokens << " from " << c.first_pos << ", group "
                                           << c.group << ", d " << d << ": token " << t << " head " << h << " [" << i
                                           << "]";
        }
      }
    }
    std::printf("attention %lld tokens from %lld, %lld x %lld heads, d %lld, %s: max |error| %.2e\n",
                static_cast<long long>(c.n_tokens), static_cast<long long>(c.first_pos),
                static_cast<long long>(c.n_head_kv), static_cast<long long>(c.group), static_cast<long long>(d),
                c.cache == DType::F32 ? "f32" : "f16", worst);
  }
}

TEST(Attention, KeySplitsOnlyWhereThreadsWouldIdle) {
  EXPECT_EQ(attention_key_splits(2, 2, 100000), 1);  // two KV heads, two threads: a job each
  EXPECT_EQ(attention_key_splits(2, 16, 4096), 16);  // 2 KV heads on 16 threads: two jobs per thread
  EXPECT_EQ(attention_key_splits(1, 16, 1024), 4);   // runs of at least kAttentionMinSplitKeys
  EXPECT_EQ(attention_key_splits(1, 16, 2 * kAttentionMinSplitKeys - 1), 1);
  EXPECT_EQ(attention_key_splits(4, 16, 4096), 8);
  EXPECT_EQ(attention_key_splits(64, 16, 4096), 1);  // a prompt: enough jobs already
}

TEST(Attention, PositionsOutsideTheReservedContextAreAnError) {
  OpContext ctx(1, 64);
  ctx.reserve_context(16, 2);
  std::vector<float> q(2 * 64), out(q.size());
  std::vector<float> cache(16 * 64);
  const KvView kv{reinterpret_cast<uint8_t*>(cache.data()), DType::F32, 64 * sizeof(float)};
  const std::vector<int32_t> bad = {16};
  EXPECT_THROW(attention(ctx, q.data(), 1, 2, 1, 64, kv, kv, bad, out.data()), std::exception);
  const std::vector<int32_t> too_many_heads = {3};
  std::vector<float> q3(3 * 64), out3(q3.size());
  EXPECT_THROW(attention(ctx, q3.data(), 1, 3, 1, 64, kv, kv, too_many_heads, out3.data()), std::exception);
}

}  // namespace
}  // namespace tandem::cpu

namespace tandem::cpu {
namespace {

// silu(g) * u against double precision over the whole float range that matters, including
// the ends where e^-g overflows or vanishes, and a length with a remainder of the 8-wide loop.
TEST(Swiglu, MatchesDoublePrecision) {
  std::vector<float> gate, up;
  for (float g = -120.0f; g <= 120.0f; g += 0.0173f) gate.push_back(g);
  for (float g : {-1e30f, -89.0f, -87.5f, -1e-30f, 0.0f, 1e-30f, 87.5f, 89.0f, 1e30f}) gate.push_back(g);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (size_t i = 0; i < gate.size(); ++i) up.push_back(normal(rng));
  std::vector<float> out(gate.size());
  swiglu(gate.data(), up.data(), static_cast<int64_t>(gate.size()), out.data());
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    const double expected = g / (1.0 + std::exp(-g)) * up[i];
    ASSERT_NEAR(out[i], expected, 4e-7 * std::fabs(expected) + 1e-30) << "gate " << gate[i];
  }
}

// RoPE turns pair (i, i + n_rot/2) of a head by theta_i, stepped out in f32 from theta_0 = p
// as llama.cpp does (backend/rope.h), and the angle is the exact p * base^(-2i/n_rot) up to
// that f32 arithmetic: one rounding per step (relative 2^-24 each) plus p's own.
TEST(Rope, TurnsEachPairByLlamaCppsF32Angle) {
  const int64_t head_dim = 128, n_rot = 64, half = n_rot / 2, n_heads = 2;  // partial rotary
  const float base = 1e6f;
  const std::vector<int32_t> positions = {0, 1, 7, 300, 4095};
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> x(positions.size() * n_heads * head_dim);
  for (float& v : x) v = normal(rng);
  std::vector<float> out = x;
  rope_neox(out.data(), static_cast<int64_t>(positions.size()), n_heads, head_dim, n_rot, positions, base);
  for (size_t t = 0; t < positions.size(); ++t) {
    float theta = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i, theta *= rope_theta_scale(base, n_rot)) {
      const double exact = positions[t] * std::pow(1e6, -2.0 * static_cast<double>(i) / n_rot);
      ASSERT_NEAR(theta, exact, (i + 2) * 6e-8 * exact) << "position " << positions[t] << ", pair " << i;
      for (int64_t h = 0; h < n_heads; ++h) {
        const size_t at = (t * n_heads + static_cast<size_t>(h)) * head_dim;
        const float a = x[at + i], b = x[at + i + half];
        EXPECT_EQ(out[at + i], a * std::cos(theta) - b * std::sin(theta));
        EXPECT_EQ(out[at + i + half], a * std::sin(theta) + b * std::cos(theta));
      }
    }
    for (int64_t h = 0; h < n_heads; ++h) {  // dims past n_rot are left alone
      for (int64_t d = n_rot; d < head_dim; ++d) {
        const size_t at = (t * n_heads + static_cast<size_t>(h)) * head_dim + static_cast<size_t>(d);
        EXPECT_EQ(out[at], x[at]);
      }
    }
  }
}

}  // namespace
}  // namespace tandem::cpu
