// The trie walk's masks equal a full-vocabulary check (every token's bytes walked through
// the grammar one by one) on the real Qwen3 vocabulary, over many grammar states; and
// Generation's check-first sampling picks the best allowed token.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "grammar/json_schema.h"
#include "grammar/mask_prefetch.h"
#include "grammar/structured_output.h"
#include "grammar/token_constraint.h"
#include "runtime/generation.h"
#include "support/test_support.h"

namespace tandem::grammar {
namespace {

using text::TokenId;

const text::Tokenizer* qwen3() {
  static const std::unique_ptr<text::Tokenizer> tok = []() -> std::unique_ptr<text::Tokenizer> {
    const std::filesystem::path path = std::filesystem::path(TANDEM_TOKENIZER_BUILD_DIR) / "qwen3-vocab.gguf";
    if (!std::filesystem::exists(path)) return nullptr;
    return std::make_unique<text::Tokenizer>(text::Tokenizer::open(path));
  }();
  return tok.get();
}

#define REQUIRE_QWEN3(tok)                                                                        \
  const text::Tokenizer* tok = qwen3();                                                           \
  if (tok == nullptr) {                                                                           \
    if (::tandem::testing::shared_required()) FAIL() << "qwen3-vocab.gguf missing (tokenizer_convert)"; \
    GTEST_SKIP() << "SKIPPED LOUDLY: qwen3-vocab.gguf not built (needs ../shared; run tokenizer_convert)"; \
  }

const char* kNestedSchema = R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 40},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "email": {"type": "string", "format": "email"},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    "address": {"type": "object", "properties": {
        "street": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
        "geo": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}, "required": ["lat", "lon"]}},
      "required": ["street", "zip"]},
    "active": {"type": "boolean"}
  },
  "required": ["name", "age", "address"]})";

std::vector<std::string> test_grammars() {
  std::vector<std::string> out;
  out.push_back(json_schema_to_gbnf(nlohmann::ordered_json::parse(kNestedSchema)));
  out.push_back(R"(root ::= ("日本" | [α-ω]+ | [^a-z\n]{1,3}) ("\n" root)?)");
  out.push_back(tool_call_constraint(nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "f",
      "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}, "required": ["q"]}}}])"),
                                     "required", true).gbnf);
  return out;
}

TEST(TokenMask, TrieMaskEqualsFullVocabularyCheck) {
  REQUIRE_QWEN3(tok);
  const std::set<TokenId> eog = {tok->vocab().find("<|im_end|>"), tok->vocab().find("<|endoftext|>")};
  const auto n_vocab = static_cast<TokenId>(tok->vocab().size());
  std::mt19937 rng(5);
  int states_checked = 0;
  for (const std::string& gbnf : test_grammars()) {
    auto g = compile(gbnf);
    TokenConstraint constraint(g, *tok, eog);
    Matcher reference(g);  // its own DFA cache, walked token by token
    Matcher::State ref_state = reference.start();
    for (int step = 0; step < 80; ++step) {
      std::vector<TokenId> fast(constraint.allowed().begin(), constraint.allowed().end());
      std::sort(fast.begin(), fast.end());
      std::vector<TokenId> brute;
      for (TokenId t = 0; t < n_vocab; ++t) {
        if (eog.count(t)) {
          if (reference.accepting(ref_state)) brute.push_back(t);
          continue;
        }
        if (tok->hidden_unless_special(t) || tok->piece(t).empty()) continue;
        if (reference.walk(ref_state, tok->piece(t)) != Matcher::kDead) brute.push_back(t);
      }
      ASSERT_EQ(fast, brute) << "step " << step << " of\n" << gbnf;
      ++states_checked;
      // allows() agrees with the mask for a sample of tokens.
      for (int k = 0; k < 200; ++k) {
        const TokenId t = static_cast<TokenId>(rng() % static_cast<uint32_t>(n_vocab));
        ASSERT_EQ(constraint.allows(t), std::binary_search(brute.begin(), brute.end(), t)) << t;
      }
      std::vector<TokenId> text_tokens;
      for (TokenId t : brute) {
        if (!eog.count(t)) text_tokens.push_back(t);
      }
      if (text_tokens.empty()) break;  // complete: only end-of-generation remains
      // Half the time a one-byte token (moves through the structure), else any allowed one.
      std::vector<TokenId> short_ones;
      for (TokenId t : text_tokens) {
        if (tok->piece(t).size() == 1) short_ones.push_back(t);
      }
      const std::vector<TokenId>& pool = (rng() % 2 && !short_ones.empty()) ? short_ones : text_tokens;
      const TokenId pick = pool[rng() % pool.size()];
      ASSERT_TRUE(constraint.accept(pick));
      ref_state = reference.walk(ref_state, tok->piece(pick));
      ASSERT_NE(ref_state, Matcher::kDead);
    }
  }
  EXPECT_GT(states_checked, 100);
}

TEST(TokenMask, ControlTokensAreNeverAllowed) {
  REQUIRE_QWEN3(tok);
  auto g = compile(R"(root ::= [^x]*)");  // anything but 'x': every control token's text would fit
  TokenConstraint c(g, *tok, {});
  const auto allowed = c.allowed();
  const TokenId im_start = tok->vocab().find("<|im_start|>");
  ASSERT_NE(im_start, text::kNoToken);
  EXPECT_FALSE(c.allows(im_start));
  EXPECT_EQ(std::find(allowed.begin(), allowed.end(), im_start), allowed.end());
  EXPECT_GT(allowed.size(), 100000u);
}

std::vector<float> random_logits(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0, 3);
  std::vector<float> l(n);
  for (float& x : l) x = d(rng);
  return l;
}

TEST(ConstrainedGeneration, GreedyPicksTheBestAllowedToken) {
  REQUIRE_QWEN3(tok);
  const std::set<TokenId> eog = {tok->vocab().find("<|im_end|>")};
  const auto n = static_cast<int64_t>(tok->vocab().size());
  auto g = compile(json_schema_to_gbnf(nlohmann::ordered_json::parse(kNestedSchema)));
  runtime::GenerationParams p;
  p.sampling.temperature = 0;
  p.grammar = g;
  runtime::Generation gen(*tok, eog, p, n);
  TokenConstraint shadow(g, *tok, eog);
  std::mt19937 rng(3);
  for (int step = 0; step < 40 && !gen.done(); ++step) {
    std::vector<float> logits = random_logits(static_cast<size_t>(n), rng);
    const auto allowed = shadow.allowed();
    TokenId best = allowed[0];
    for (TokenId t : allowed) {
      if (logits[t] > logits[best] || (logits[t] == logits[best] && t < best)) best = t;
    }
    if (step % 3 == 0) logits[static_cast<size_t>(best)] += 100;  // sometimes the model's own choice fits
    const runtime::GenerationStep s = gen.next(logits, 1000);
    ASSERT_EQ(s.token, best) << step;
    ASSERT_TRUE(shadow.accept(s.token));
  }
}

TEST(ConstrainedGeneration, SamplingOnlyEverPicksAllowedTokens) {
  REQUIRE_QWEN3(tok);
  const std::set<TokenId> eog = {tok->vocab().find("<|im_end|>")};
  const auto n = static_cast<int64_t>(tok->vocab().size());
  auto g = compile(R"(root ::= "{\"n\": " [0-9]{1,3} "}")");
  for (uint64_t seed = 0; seed < 5; ++seed) {
    runtime::GenerationParams p;
    p.sampling.temperature = 1.5f;
    p.sampling.seed = seed;
    p.grammar = g;
    runtime::Generation gen(*tok, eog, p, n);
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::string text;
    while (!gen.done()) {
      std::vector<float> logits = random_logits(static_cast<size_t>(n), rng);
      text += gen.next(logits, 1000).text;
    }
    EXPECT_EQ(gen.reason(), runtime::FinishReason::EndOfGeneration);
    EXPECT_TRUE(g->matches(text)) << text;
  }
}

// The mask computed on its own thread during the (here simulated) forward pass changes no
// choice: greedy and sampled runs with and without the prefetch pick the same tokens, and
// the prefetch thread did compute masks (one per step it was started).
TEST(ConstrainedGeneration, PrefetchedMasksChangeNoChoice) {
  REQUIRE_QWEN3(tok);
  const std::set<TokenId> eog = {tok->vocab().find("<|im_end|>")};
  const auto n = static_cast<int64_t>(tok->vocab().size());
  auto g = compile(json_schema_to_gbnf(nlohmann::ordered_json::parse(kNestedSchema)));
  for (float temperature : {0.0f, 1.0f}) {
    std::vector<TokenId> runs[2];
    for (int prefetch = 0; prefetch < 2; ++prefetch) {
      runtime::GenerationParams p;
      p.sampling.temperature = temperature;
      p.sampling.seed = 11;
      p.grammar = g;
      p.prefetch_mask = prefetch == 1;
      runtime::Generation gen(*tok, eog, p, n);
      std::mt19937 rng(5);
      for (int step = 0; step < 60 && !gen.done(); ++step) {
        std::vector<float> logits = random_logits(static_cast<size_t>(n), rng);
        gen.prefetch();  // what the decode loops call just before the forward pass
        const runtime::GenerationStep s = gen.next(logits, 1000);
        runs[prefetch].push_back(s.token);
      }
    }
    EXPECT_EQ(runs[0], runs[1]) << "temperature " << temperature;
    EXPECT_GT(runs[0].size(), 20u);
  }
  TokenConstraint c(g, *tok, eog);
  MaskPrefetch prefetch(c);
  prefetch.start();
  prefetch.wait();
  EXPECT_EQ(prefetch.computed(), 1u);
  TokenConstraint fresh(g, *tok, eog);
  std::vector<TokenId> a(c.allowed().begin(), c.allowed().end()), b(fresh.allowed().begin(), fresh.allowed().end());
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
}

// An error in the background computation (a grammar too ambiguous to match) is not lost:
// it surfaces in the next step, where the server turns it into the request's 400.
TEST(ConstrainedGeneration, PrefetchErrorSurfacesInTheNextStep) {
  REQUIRE_QWEN3(tok);
  const std::set<TokenId> eog = {tok->vocab().find("<|im_end|>")};
  const auto n = static_cast<int64_t>(tok->vocab().size());
  runtime::GenerationParams p;
  p.sampling.temperature = 0;
  p.grammar = compile(R"(root ::= ([^?] root* | [^?]){1,9})");
  p.prefetch_mask = true;
  runtime::Generation gen(*tok, eog, p, n);
  std::vector<float> logits(static_cast<size_t>(n), 0.0f);
  gen.prefetch();
  try {
    gen.next(logits, 1000);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too ambiguous to match"), std::string::npos) << e.what();
  }
}

TEST(ConstrainedGeneration, ThinkGateHoldsTheGrammarUntilTheReasoningCloses) {
  REQUIRE_QWEN3(tok);
  const TokenId close = tok->vocab().find("</think>");
  const TokenId word = tok->vocab().find("hello");
  ASSERT_NE(close, text::kNoToken);
  ASSERT_NE(word, text::kNoToken);
  const auto n = static_cast<int64_t>(tok->vocab().size());
  runtime::GenerationParams p;
  p.sampling.temperature = 0;
  p.grammar = compile(R"(root ::= "yes" | "no")", true);
  p.think_gate = runtime::ThinkGate::Open;
  const std::set<TokenId> no_eog;
  runtime::Generation gen(*tok, no_eog, p, n);
  auto push = [&](TokenId favourite) {
    std::vector<float> logits(static_cast<size_t>(n), 0.0f);
    logits[static_cast<size_t>(favourite)] = 10;
    return gen.next(logits, 1000).token;
  };
  EXPECT_EQ(push(word), word);    // reasoning: free
  EXPECT_EQ(push(close), close);  // closes it
  const TokenId after = push(word);
  EXPECT_NE(after, word);         // the answer: held to the grammar
  const std::string piece = tok->piece(after);
  EXPECT_TRUE(std::string("yes").starts_with(piece) || std::string("no").starts_with(piece) ||
              piece.find_first_not_of(" \n") == std::string::npos)
      << piece;
}

}  // namespace
}  // namespace tandem::grammar
