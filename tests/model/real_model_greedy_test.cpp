// Greedy generation on the real model against llama.cpp (tests/data/llama_reference/
// greedy.json, recorded with stock llama-simple, and with llama-completion -fa off, by
// tools/crosscheck/llama_greedy_reference.py).
//
// tandem's fast path rounds activations to 8 bits, keeps an f16 KV cache and steps RoPE
// angles out in f32 as llama.cpp does (backend/rope.h: with exact angles 2 of the 5 cases
// parted, with llama.cpp's 1, at step 19 with a top-2 margin of 0.16), but llama.cpp also
// rounds the queries and the softmax weights to f16 inside attention (differently with
// flash attention on or off), so logits differ by ~0.1 and the texts part wherever two
// tokens are that close. llama.cpp is no steadier: with -fa off it parts from its own
// default text in 4 of the 5 cases, once after 38 characters. So:
//   - tandem's text must equal llama.cpp's up to the end, or up to a step where tandem's
//     own top-2 margin was below kNearTie (after which the continuations are not compared);
//   - summed over the cases, tandem must agree with llama.cpp's default text for at least
//     as many characters as llama.cpp -fa off does.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "support/test_support.h"
#include "text/detokenizer.h"
#include "text/generation_stop.h"
#include "text/tokenizer.h"

namespace tandem::model {
namespace {

constexpr float kNearTie = 0.25f;

TEST(RealModelGreedy, MatchesLlamaCpp) {
  TANDEM_REQUIRE_TEST_MODEL(path);
  std::ifstream in(std::filesystem::path(TANDEM_SOURCE_DIR) / "tests/data/llama_reference/greedy.json");
  const auto ref = nlohmann::json::parse(in);
  const auto files = gguf::ModelFiles::open(path);
  const auto model = load_model(files);
  const text::Tokenizer tokenizer = text::Tokenizer::from_gguf(files.primary());
  const auto eog = text::end_of_generation_tokens(tokenizer.vocab(), files.primary());
  cpu::OpContext ctx(2, model->max_row());
  int identical = 0, parted_at_near_tie = 0;
  size_t tandem_agrees = 0, fa_off_agrees = 0;  // characters of llama.cpp's text matched
  for (const auto& c : ref["cases"]) {
    const std::string prompt = c["prompt"], expected = c["generated"], fa_off = c["generated_fa_off"];
    size_t same = 0;
    while (same < std::min(expected.size(), fa_off.size()) && expected[same] == fa_off[same]) ++same;
    fa_off_agrees += same;
    text::EncodeOptions enc;
    enc.add_special = true;
    enc.parse_special = true;
    const auto tokens = tokenizer.encode(prompt, enc);
    runtime::Session session(*model, ctx, 256, 64);
    std::span<float> logits = session.feed(tokens);
    text::StreamDecoder decoder(tokenizer, {.show_special = true});
    std::string ours;
    bool parted = false;
    for (int step = 0; step < ref["n_predict"].get<int>(); ++step) {
      const int32_t next = runtime::Sampler::argmax(logits);
      float best = logits[static_cast<size_t>(next)], second = -INFINITY;
      for (size_t i = 0; i < logits.size(); ++i) {
        if (static_cast<int32_t>(i) != next) second = std::max(second, logits[i]);
      }
      if (eog.count(next)) break;
      const std::string piece = decoder.push(next);
      if (expected.compare(ours.size(), piece.size(), piece) != 0) {
        ASSERT_LT(best - second, kNearTie) << "step " << step << " of \"" << prompt << "\": tandem's text "
                                           << ours + piece << " leaves llama.cpp's " << expected
                                           << " with a top-2 margin of " << best - second;
        std::printf("case %d parted at step %d with tandem's top-2 margin %.4f\n", identical + parted_at_near_tie,
                    step, best - second);
        parted = true;
        break;
      }
      ours += piece;
      logits = session.feed(std::span<const int32_t>(&next, 1));
    }
    if (parted) {
      ++parted_at_near_tie;
      tandem_agrees += ours.size();
    } else {
      EXPECT_EQ(ours + decoder.finish(), expected) << prompt;
      ++identical;
      tandem_agrees += expected.size();
    }
  }
  std::printf("characters of llama.cpp's greedy texts matched: tandem %zu, llama.cpp -fa off %zu\n", tandem_agrees,
              fa_off_agrees);
  EXPECT_GE(tandem_agrees, fa_off_agrees);
  std::printf("real model greedy vs llama.cpp: %d identical, %d parted at a near-tie (< %.2f)\n", identical,
              parted_at_near_tie, kNearTie);
}

}  // namespace
}  // namespace tandem::model
