// Greedy generation on the real model against llama.cpp (tests/data/llama_reference/
// greedy.json, recorded with stock llama-simple by tools/crosscheck/llama_greedy_reference.py).
//
// tandem's fast path rounds activations to 8 bits and keeps an f16 KV cache as llama.cpp does,
// but llama.cpp's CPU flash attention (on by default) also rounds Q to f16 and accumulates
// V*softmax in f16, so logits still differ by ~0.1. How much that matters: on case 1 llama.cpp
// itself with -fa off parts from its -fa on text at step ~7, where tandem holds to step 19
// (top-2 margin 0.10). So: the texts must be identical up to the end, or up to a step where
// tandem's own top-2 margin was below kNearTie -- after which the continuations part and are
// not compared.
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
  for (const auto& c : ref["cases"]) {
    const std::string prompt = c["prompt"], expected = c["generated"];
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
    } else {
      EXPECT_EQ(ours + decoder.finish(), expected) << prompt;
      ++identical;
    }
  }
  std::printf("real model greedy vs llama.cpp: %d identical, %d parted at a near-tie (< %.2f)\n", identical,
              parted_at_near_tie, kNearTie);
  EXPECT_GE(identical, 4);  // measured: 4 of the 5 run all 64 tokens identically
}

}  // namespace
}  // namespace tandem::model
