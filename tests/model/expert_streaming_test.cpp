// The expert-streaming decision (model/expert_streaming.h): the modes, the break-even from
// the rates, each path measured before the decision trusts it, measurements replacing the
// priors, and bad mode names.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/expert_streaming.h"

namespace tandem::model {
namespace {

// Qwen3.5-35B-A3B's experts per layer: k = 8, F = 512, D = 2048 -> 25.2 M MAC per token;
// ~0.5 GB of Q4_K/Q6_K weights.
constexpr double kMacs = 8.0 * 3 * 512 * 2048, kBytes = 0.5e9;

TEST(ExpertStreaming, ModesAndDecodeSizedBatches) {
  ExpertStreaming off;  // the default
  EXPECT_FALSE(off.stream(4096, kBytes, kMacs));
  ExpertStreaming on(ExpertStreaming::Mode::kOn);
  EXPECT_TRUE(on.stream(9, kBytes, kMacs));
  EXPECT_FALSE(on.stream(ExpertStreaming::kMaxDecodeTokens, kBytes, kMacs)) << "decode never streams";
  ExpertStreaming automatic(ExpertStreaming::Mode::kAuto, {600e9, 25e9});
  EXPECT_FALSE(automatic.stream(1, kBytes, kMacs));
  EXPECT_THROW(ExpertStreaming(ExpertStreaming::Mode::kAuto, {0.0, 25e9}), Error);
}

TEST(ExpertStreaming, BreakEvenFollowsTheRatesOnceBothAreMeasured) {
  ExpertStreaming s(ExpertStreaming::Mode::kAuto, {1.0, 1.0});  // priors replaced below
  s.measured_cpu(600e9, 1.0);     // 600 GMAC/s
  s.measured_stream(25e9, 1.0);   // 25 GB/s
  EXPECT_DOUBLE_EQ(s.rates().cpu_macs_per_s, 600e9);
  EXPECT_DOUBLE_EQ(s.rates().stream_bytes_per_s, 25e9);
  // Break-even: 0.5e9 / 25e9 s = 20 ms = T * 25.2e6 / 600e9 -> T = 476.
  EXPECT_FALSE(s.stream(470, kBytes, kMacs));
  EXPECT_TRUE(s.stream(480, kBytes, kMacs));
  EXPECT_TRUE(s.stream(4096, kBytes, kMacs));
  // A slower link moves it: 12.5 GB/s measured from now on (averaged in) -> later.
  for (int i = 0; i < 40; ++i) s.measured_stream(12.5e9, 1.0);
  EXPECT_NEAR(s.rates().stream_bytes_per_s, 12.5e9, 1e8);
  EXPECT_FALSE(s.stream(900, kBytes, kMacs));
  EXPECT_TRUE(s.stream(1000, kBytes, kMacs));
}

TEST(ExpertStreaming, EachPathIsMeasuredBeforeItIsRuledOut) {
  // Priors say streaming is far better; a long batch still runs on the CPU once...
  ExpertStreaming s(ExpertStreaming::Mode::kAuto, {1e9, 1e11});
  EXPECT_FALSE(s.stream(ExpertStreaming::kExploreTokens, kBytes, kMacs));
  // ...but a short prompt is not spent on exploring.
  EXPECT_TRUE(s.stream(ExpertStreaming::kExploreTokens - 1, kBytes, kMacs));
  s.measured_cpu(1e12, 1.0);  // the CPU turns out fast: 1 TMAC/s
  // Now the CPU is predicted faster (3.2 ms against 5 ms), and streaming, never measured, is
  // tried once before it is ruled out.
  EXPECT_TRUE(s.stream(ExpertStreaming::kExploreTokens, kBytes, kMacs));
  s.measured_stream(kBytes, 0.005);
  EXPECT_FALSE(s.stream(ExpertStreaming::kExploreTokens, kBytes, kMacs));
  EXPECT_TRUE(s.stream(4 * ExpertStreaming::kExploreTokens, kBytes, kMacs)) << "12.8 ms against 5 ms";
  // The other way round: priors favour the CPU, streaming is tried once.
  ExpertStreaming t(ExpertStreaming::Mode::kAuto, {1e15, 1e6});
  EXPECT_TRUE(t.stream(ExpertStreaming::kExploreTokens, kBytes, kMacs));
  t.measured_stream(kBytes, 1.0);  // slow: 0.5 GB/s
  EXPECT_FALSE(t.stream(ExpertStreaming::kExploreTokens, kBytes, kMacs));
  // Measurements of nothing change nothing.
  const double before = t.rates().cpu_macs_per_s;
  t.measured_cpu(0, 1.0);
  t.measured_cpu(1e9, 0);
  EXPECT_EQ(t.rates().cpu_macs_per_s, before);
}

TEST(ExpertStreaming, ModeNames) {
  EXPECT_EQ(ExpertStreaming::parse_mode("auto", "--expert-streaming"), ExpertStreaming::Mode::kAuto);
  EXPECT_EQ(ExpertStreaming::parse_mode("on", "--expert-streaming"), ExpertStreaming::Mode::kOn);
  EXPECT_EQ(ExpertStreaming::parse_mode("off", "--expert-streaming"), ExpertStreaming::Mode::kOff);
  EXPECT_EQ(ExpertStreaming::mode_name(ExpertStreaming::Mode::kAuto), "auto");
  try {
    ExpertStreaming::parse_mode("yes", "--expert-streaming");
    FAIL() << "accepted 'yes'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--expert-streaming: 'yes' is not off, auto or on"), std::string::npos);
  }
}

}  // namespace
}  // namespace tandem::model
