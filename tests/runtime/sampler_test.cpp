// The sampling chain: each filter does what llama.cpp's flag of the same name does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <map>
#include <vector>

#include "core/error.h"
#include "runtime/sampler.h"

namespace tandem::runtime {
namespace {

SamplerParams plain(float temperature) {
  SamplerParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
  Sampler s(plain(0.0f), 5);
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f, 2.0f};
  EXPECT_EQ(s.sample(logits), 1);
}

TEST(Sampler, TopKOneIsGreedyAtAnyTemperature) {
  SamplerParams p = plain(5.0f);
  p.top_k = 1;
  Sampler s(p, 4);
  for (int i = 0; i < 100; ++i) {
    std::vector<float> logits = {0.0f, 0.5f, 0.4f, 0.49f};
    ASSERT_EQ(s.sample(logits), 1);
  }
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  Sampler s(plain(1.0f), 3);
  const std::vector<float> base = {0.0f, std::log(2.0f), std::log(7.0f)};  // probabilities 0.1, 0.2, 0.7
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> logits = base;
    ++counts[s.sample(logits)];
  }
  EXPECT_NEAR(counts[0] / double(n), 0.1, 0.015);
  EXPECT_NEAR(counts[1] / double(n), 0.2, 0.015);
  EXPECT_NEAR(counts[2] / double(n), 0.7, 0.015);
}

TEST(Sampler, SameSeedSameTokens) {
  SamplerParams p = plain(1.0f);
  p.seed = 1234;
  Sampler a(p, 50), b(p, 50);
  std::vector<float> base(50);
  for (int i = 0; i < 50; ++i) base[i] = std::sin(i * 0.7f);
  for (int i = 0; i < 200; ++i) {
    std::vector<float> la = base, lb = base;
    ASSERT_EQ(a.sample(la), b.sample(lb));
  }
}

TEST(Sampler, MinPAndTopPDropTheTail) {
  SamplerParams p = plain(1.0f);
  p.min_p = 0.2f;  // keeps tokens with probability >= 0.2 * max
  Sampler s(p, 3);
  for (int i = 0; i < 2000; ++i) {
    std::vector<float> logits = {std::log(0.05f), std::log(0.35f), std::log(0.6f)};
    ASSERT_NE(s.sample(logits), 0);
  }
  SamplerParams q = plain(1.0f);
  q.top_p = 0.5f;  // the top token alone has 0.6 >= 0.5
  Sampler t(q, 3);
  for (int i = 0; i < 2000; ++i) {
    std::vector<float> logits = {std::log(0.05f), std::log(0.35f), std::log(0.6f)};
    ASSERT_EQ(t.sample(logits), 2);
  }
}

TEST(Sampler, PenaltiesApplyToRecentTokensOnly) {
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.penalty_last_n = 3;
  Sampler s(p, 4);
  s.accept(1);
  s.accept(1);
  std::vector<float> logits = {1.0f, 4.0f, -2.0f, 3.0f};
  EXPECT_EQ(s.sample(logits), 3);
  EXPECT_FLOAT_EQ(logits[1], 4.0f / 2.0f - 2 * 0.25f - 0.5f);  // 1.0
  EXPECT_FLOAT_EQ(logits[3], 3.0f);
  s.accept(2);
  s.accept(0);  // window of 3 is now {1, 2, 0}: one 1 left
  std::vector<float> again = {1.0f, 4.0f, -2.0f, 3.0f};
  s.sample(again);
  EXPECT_FLOAT_EQ(again[1], 4.0f / 2.0f - 0.25f - 0.5f);
  EXPECT_FLOAT_EQ(again[2], -2.0f * 2.0f - 0.25f - 0.5f);
}

// The chain written the plain way: sort the whole vocabulary, then cut. The sampler's
// distribution() must keep the same tokens with the same probabilities without that sort.
std::vector<std::pair<int32_t, double>> reference_chain(const std::vector<float>& logits, const SamplerParams& p) {
  std::vector<std::pair<float, int32_t>> c;
  for (size_t i = 0; i < logits.size(); ++i) c.emplace_back(logits[i], static_cast<int32_t>(i));
  std::sort(c.begin(), c.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  size_t n = p.top_k > 0 ? std::min(c.size(), static_cast<size_t>(p.top_k)) : c.size();
  auto softmax = [&](size_t count, double t) {
    std::vector<double> q(count);
    double sum = 0;
    for (size_t i = 0; i < count; ++i) sum += q[i] = std::exp((c[i].first - c[0].first) / t);
    for (double& x : q) x /= sum;
    return q;
  };
  std::vector<double> q = softmax(n, 1.0);
  if (p.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
      cum += q[i];
      if (cum >= p.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0.0f) {
    size_t keep = 1;
    while (keep < n && q[keep] >= q[0] * p.min_p) ++keep;
    n = keep;
  }
  q = softmax(n, p.temperature);
  std::vector<std::pair<int32_t, double>> out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(c[i].second, q[i]);
  return out;
}

TEST(Sampler, DistributionEqualsTheFullySortedChainOnARealSizedVocabulary) {
  const size_t vocab = 151936;  // Qwen2.5/Qwen3
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 2.5f);
  std::vector<float> base(vocab);
  for (float& x : base) x = noise(rng);
  for (int i = 0; i < 40; ++i) base[rng() % vocab] += 9.0f + static_cast<float>(i % 7);  // a few likely tokens
  int cases = 0;
  for (int top_k : {0, 40, 5000}) {
    for (float top_p : {1.0f, 0.95f, 0.5f}) {
      for (float min_p : {0.0f, 0.05f}) {
        for (float temperature : {0.7f, 1.3f}) {
          SamplerParams p = plain(temperature);
          p.top_k = top_k;
          p.top_p = top_p;
          p.min_p = min_p;
          const auto want = reference_chain(base, p);
          Sampler s(p, static_cast<int64_t>(vocab));
          std::vector<float> logits = base;
          const auto got = s.distribution(logits);
          ASSERT_EQ(got.size(), want.size()) << "top_k " << top_k << " top_p " << top_p << " min_p " << min_p;
          std::map<int32_t, double> got_p;
          for (const auto& [prob, token] : got) got_p[token] = prob;
          for (const auto& [token, prob] : want) {
            ASSERT_TRUE(got_p.count(token)) << "token " << token << " missing, top_k " << top_k << " top_p " << top_p;
            ASSERT_NEAR(got_p[token], prob, 1e-6 + 1e-4 * prob);
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, 36);
}

TEST(Sampler, RejectsNonsenseParameters) {
  SamplerParams p = plain(1.0f);
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler(p, 4), Error);
  SamplerParams q = plain(1.0f);
  q.repeat_penalty = 0.0f;
  EXPECT_THROW(Sampler(q, 4), Error);
}

}  // namespace
}  // namespace tandem::runtime
