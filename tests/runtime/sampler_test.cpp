// The sampling chain: each filter does what llama.cpp's flag of the same name does.
#include <gtest/gtest.h>

#include <cmath>
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
