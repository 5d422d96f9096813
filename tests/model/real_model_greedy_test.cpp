// Greedy generation on the real model against llama.cpp (tests/data/llama_reference/
// greedy.json, recorded by tools/crosscheck/llama_greedy_reference.py through
// tools/crosscheck/llama_greedy.cpp, which generates as llama-simple does).
//
// Why this is not "tandem's text == llama.cpp's text": llama.cpp has no one greedy text.
// The same commit (d32676d77), same model, same defaults, built for AVX2 and built native
// on an AVX-512 CPU, writes different texts for 3 of these 5 prompts (parting after 22,
// 31 and 8 tokens); with flash attention off it parts from itself in 4 of 5. Every matmul
// re-quantizes its input to 8 bits, so an ulp of difference anywhere (a sum taken in
// another order, another exp) moves some inputs across a rounding boundary and the logits
// by ~0.1 rms. tandem's own scalar and AVX-512 paths differ by the same 0.08 rms. Equal
// text needs bit-equal arithmetic with one build of llama.cpp; what can be asked is that
// tandem sits inside llama.cpp's spread. For each reference run R (llama.cpp's defaults,
// built for AVX2 and for AVX-512) the other recorded runs are the yardstick:
//   1. decisions: fed R's tokens one at a time, tandem's argmax equals R's token at every
//      step, except where R's own top-2 margin is below kNearTie;
//   2. logits: over R's 8 best candidates at every step, with every llama.cpp run fed R's
//      tokens too, tandem is as close to the consensus of llama.cpp's runs as they are:
//      its rms distance to the mean of the llama.cpp runs (leaving out one run at a time,
//      so the mean is of as many runs as a run's own consensus has) is at most
//      kSpreadSlack x the largest distance of one llama.cpp run to the mean of the others;
//   3. text: tandem's free-running greedy text equals R's, or parts from it where tandem's
//      own top-2 margin is below kNearTie.
// How many characters each engine's text shares with R is printed, not asserted: one early
// parting swings it by hundreds, so it cannot tell a fault from other arithmetic (tandem's
// own scalar path, TANDEM_CPU_MAX=scalar, passes checks 1-3 and its logits sit 0.075 rms
// from the runs' mean, yet its texts share 598 characters with one reference where a
// llama.cpp run shares 738).
// Resolution (tried): attention's scale made 2% too large fails check 2 on both references
// (0.081 rms against a bound of 0.079); 1% passes. Smaller errors are the fixture tests' to
// catch (1e-3 against transformers).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "runtime/sampler.h"
#include "backend/cpu/cpu_backend.h"
#include "runtime/session.h"
#include "support/test_support.h"
#include "text/detokenizer.h"
#include "text/generation_stop.h"
#include "text/tokenizer.h"

namespace tandem::model {
namespace {

// A top-2 margin below this is a near-tie: llama.cpp's runs move the top-2 margin by up
// to ~0.5 between each other (0.1 rms), so a choice this close is one they disagree on.
constexpr float kNearTie = 0.25f;
// Room over the least-agreeing llama.cpp run's distance to the consensus.
constexpr double kSpreadSlack = 1.05;

// rms of x - mean(runs), the mean taken over every run but `left_out`.
double rms_to_mean(const std::vector<float>& x, const std::map<std::string, std::vector<float>>& runs,
                   const std::string& left_out) {
  double sum_sq = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double mean = 0;
    int n = 0;
    for (const auto& [name, v] : runs) {
      if (name == left_out) continue;
      mean += v[i];
      ++n;
    }
    const double d = x[i] - mean / n;
    sum_sq += d * d;
  }
  return std::sqrt(sum_sq / static_cast<double>(x.size()));
}

float top2_margin(std::span<const float> logits, int32_t best) {
  float second = -INFINITY;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (static_cast<int32_t>(i) != best) second = std::max(second, logits[i]);
  }
  return logits[static_cast<size_t>(best)] - second;
}

size_t common_prefix(const std::string& a, const std::string& b) {
  size_t n = 0;
  while (n < std::min(a.size(), b.size()) && a[n] == b[n]) ++n;
  return n;
}

// tandem's free-running greedy generation on one prompt: the text piece of each step with
// the top-2 margin it was chosen by, then what the decoder still held at the end.
struct FreeRun {
  std::vector<std::string> pieces;
  std::vector<float> margins;
  std::string tail;
};

class RealModelGreedy : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::tandem::testing::test_model();
    if (path_ == nullptr) {
      if (::tandem::testing::shared_required()) FAIL() << "real test model missing (TANDEM_TEST_MODEL)";
      GTEST_SKIP() << "SKIPPED LOUDLY: real test model not found; run tools/fetch_model.sh";
    }
    std::ifstream in(std::filesystem::path(TANDEM_SOURCE_DIR) / "tests/data/llama_reference/greedy.json");
    ref_ = nlohmann::json::parse(in);
    files_.emplace(gguf::ModelFiles::open(path_));
    model_ = load_model(*files_);
    tokenizer_.emplace(text::Tokenizer::from_gguf(files_->primary()));
    eog_ = text::end_of_generation_tokens(tokenizer_->vocab(), files_->primary());
    ctx_.emplace(2, model_->max_row());
  }

  std::vector<int32_t> prompt_tokens(const nlohmann::json& c) {
    text::EncodeOptions enc;
    enc.add_special = true;
    enc.parse_special = true;
    return tokenizer_->encode(c["prompt"].get<std::string>(), enc);
  }

  // Greedy from the prompt until end of generation or n_predict tokens.
  FreeRun free_run(const nlohmann::json& c) {
    cpu::CpuBackend session_cpu(*ctx_);
    runtime::Session session(*model_, model::Backends{&session_cpu, nullptr}, 256, 64);
    std::span<float> logits = session.feed(prompt_tokens(c));
    text::StreamDecoder decoder(*tokenizer_, {.show_special = true});
    FreeRun run;
    for (int step = 0; step < ref_["n_predict"].get<int>(); ++step) {
      const int32_t next = runtime::Sampler::argmax(logits);
      if (eog_.count(next)) break;
      run.pieces.push_back(decoder.push(next));
      run.margins.push_back(top2_margin(logits, next));
      logits = session.feed(std::span<const int32_t>(&next, 1));
    }
    run.tail = decoder.finish();
    return run;
  }

  // The run's text up to the first piece that leaves `reference` (which must come at a
  // near-tie), or all of it; `parted` says which.
  static std::string text_against(const FreeRun& run, const std::string& reference, const nlohmann::json& prompt,
                                  bool& parted) {
    std::string text;
    parted = false;
    for (size_t step = 0; step < run.pieces.size(); ++step) {
      const std::string& piece = run.pieces[step];
      if (reference.compare(text.size(), piece.size(), piece) != 0) {
        EXPECT_LT(run.margins[step], kNearTie) << "step " << step << " of " << prompt << ": tandem's text "
                                               << text + piece << " leaves llama.cpp's " << reference
                                               << " with a top-2 margin of " << run.margins[step];
        std::printf("  parted at step %zu, tandem's top-2 margin %.4f\n", step, run.margins[step]);
        parted = true;
        return text;
      }
      text += piece;
    }
    return text + run.tail;
  }

  const char* path_ = nullptr;
  nlohmann::json ref_;
  std::optional<gguf::ModelFiles> files_;
  std::unique_ptr<Model> model_;
  std::optional<text::Tokenizer> tokenizer_;
  std::set<int32_t> eog_;
  std::optional<cpu::OpContext> ctx_;
};

TEST_F(RealModelGreedy, TokenizesPromptsAsLlamaCpp) {
  for (const auto& c : ref_["cases"]) {
    EXPECT_EQ(prompt_tokens(c), c["prompt_tokens"].get<std::vector<int32_t>>()) << c["prompt"];
  }
}

TEST_F(RealModelGreedy, TracksLlamaCppWithinItsOwnSpread) {
  ASSERT_GE(ref_["references"].size(), 1u);
  std::vector<FreeRun> runs;  // tandem's own text does not depend on the reference
  for (const auto& c : ref_["cases"]) runs.push_back(free_run(c));
  for (const std::string reference : ref_["references"]) {
    SCOPED_TRACE("reference run " + reference + ": " + ref_["runs"][reference]["build"].get<std::string>());
    std::printf("reference run %s\n", reference.c_str());
    // Logits at R's best ids, every step of every prompt, of tandem and of each llama.cpp run.
    std::vector<float> tandem_logits;
    std::map<std::string, std::vector<float>> run_logits;
    int steps = 0, tandem_flips = 0, identical = 0;
    std::map<std::string, int> run_flips;
    size_t tandem_chars = 0;
    std::map<std::string, size_t> run_chars;
    for (size_t ci = 0; ci < ref_["cases"].size(); ++ci) {
      const auto& c = ref_["cases"][ci];
      const auto& r = c["greedy"][reference];
      const auto forced_tokens = r["tokens"].get<std::vector<int32_t>>();
      const auto& top_ids = r["top_ids"];
      const auto& top_logits = r["top_logits"];
      ASSERT_GE(top_ids.size(), forced_tokens.size());

      // 1 and 2: tandem fed the reference's tokens, one per step as generation feeds them.
      cpu::CpuBackend session_cpu(*ctx_);
      runtime::Session session(*model_, model::Backends{&session_cpu, nullptr}, 256, 64);
      std::span<float> logits = session.feed(prompt_tokens(c));
      for (size_t step = 0; step < top_ids.size(); ++step) {
        const auto ids = top_ids[step].get<std::vector<int32_t>>();
        const auto vals = top_logits[step].get<std::vector<float>>();
        for (size_t k = 0; k < ids.size(); ++k) {
          tandem_logits.push_back(logits[static_cast<size_t>(ids[k])]);
          run_logits[reference].push_back(vals[k]);
        }
        for (const auto& [run, forced] : c["forced"][reference].items()) {
          for (const float v : forced["logits"][step]) run_logits[run].push_back(v);
          if (forced["argmax"][step].get<int32_t>() != ids[0]) ++run_flips[run];
        }
        ++steps;
        const int32_t ours = runtime::Sampler::argmax(logits);
        if (ours != ids[0]) {
          ++tandem_flips;
          EXPECT_LT(vals[0] - vals[1], kNearTie)
              << c["prompt"] << " step " << step << ": tandem takes " << ours << ", llama.cpp " << ids[0]
              << " with a top-2 margin of " << vals[0] - vals[1];
        }
        if (step < forced_tokens.size()) logits = session.feed(std::span<const int32_t>(&forced_tokens[step], 1));
      }

      // 3: free-running text.
      const std::string expected = r["text"];
      bool parted = false;
      const std::string ours = text_against(runs[ci], expected, c["prompt"], parted);
      if (!parted) {
        EXPECT_EQ(ours, expected) << c["prompt"];
        ++identical;
      }
      tandem_chars += common_prefix(ours, expected);
      for (const auto& [name, g] : c["greedy"].items()) {
        if (name != reference) run_chars[name] += common_prefix(g["text"].get<std::string>(), expected);
      }
    }

    ASSERT_GE(run_logits.size(), 3u) << "too few llama.cpp runs recorded to measure their spread";
    double spread = 0, tandem_distance = 0;
    for (const auto& [run, v] : run_logits) {
      ASSERT_EQ(v.size(), tandem_logits.size()) << run;
      const double distance = rms_to_mean(v, run_logits, run);
      tandem_distance += rms_to_mean(tandem_logits, run_logits, run) / static_cast<double>(run_logits.size());
      spread = std::max(spread, distance);
      if (run == reference) {
        std::printf("  llama.cpp run %-14s logits %.4f rms from the others' mean\n", run.c_str(), distance);
        continue;
      }
      std::printf("  llama.cpp run %-14s logits %.4f rms from the others' mean, other choice at %d of %d steps,"
                  " text agrees %zu chars\n", run.c_str(), distance, run_flips[run], steps, run_chars[run]);
    }
    std::printf("  tandem                   logits %.4f rms from the runs' mean, other choice at %d of %d steps,"
                " text agrees %zu chars (%d of %zu texts identical)\n",
                tandem_distance, tandem_flips, steps, tandem_chars, identical, ref_["cases"].size());
    EXPECT_LE(tandem_distance, kSpreadSlack * spread);
  }
}

}  // namespace
}  // namespace tandem::model
