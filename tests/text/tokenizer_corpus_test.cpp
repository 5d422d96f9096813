// The real Qwen3 tokenizer (tokenizer.json converted to a GGUF vocab by tools/tokenizer)
// against HF tokenizers on the committed corpus: tests/oracle/tokenizer_oracle.py writes
// the expected ids of every case (each line, multi-line chunks joined with \n, \r\n and
// \n\n\n, special-token texts) with and without special-token parsing; here our ids must
// be identical, decode(encode(x)) == x, and streaming decode equals whole decode while
// never releasing an incomplete UTF-8 sequence.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/test_support.h"
#include "text/detokenizer.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace fs = std::filesystem;
using namespace tandem::text;

namespace {

struct Case {
  std::string text;
  bool parse_special;
  std::vector<TokenId> ids;
};

struct Corpus {
  std::vector<Case> cases;
  std::unique_ptr<Tokenizer> tok;
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus c;
    const fs::path dir = TANDEM_TOKENIZER_BUILD_DIR;
    std::ifstream in(dir / "qwen3-expected.json");
    if (!in) return c;
    const nlohmann::json j = nlohmann::json::parse(in);
    for (const auto& e : j.at("cases")) {
      c.cases.push_back({e.at("text").get<std::string>(), e.at("parse_special").get<bool>(),
                         e.at("ids").get<std::vector<TokenId>>()});
    }
    c.tok = std::make_unique<Tokenizer>(Tokenizer::open(dir / "qwen3-vocab.gguf"));
    return c;
  }();
  return c;
}

std::string escaped(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string describe(const Tokenizer& tok, const std::vector<TokenId>& ids) {
  std::string out;
  for (TokenId id : ids) out += fmt::format("{}:{} ", id, escaped(tok.piece(id)));
  return out;
}

#define REQUIRE_CORPUS()                                                                  \
  TANDEM_REQUIRE_SHARED_DATA(shared_dir_unused);                                         \
  (void)shared_dir_unused;                                                                \
  const Corpus& C = corpus();                                                             \
  ASSERT_TRUE(C.tok) << "expected ids missing: run ctest (tokenizer_oracle_expect first)"; \
  ASSERT_GT(C.cases.size(), 2000u)

TEST(TokenizerCorpus, IdsMatchHfTokenizers) {
  REQUIRE_CORPUS();
  size_t failures = 0, tokens = 0;
  for (size_t i = 0; i < C.cases.size(); ++i) {
    const Case& c = C.cases[i];
    const std::vector<TokenId> got = C.tok->encode(c.text, {false, c.parse_special});
    tokens += got.size();
    if (got == c.ids) continue;
    if (++failures <= 5) {
      size_t k = 0;
      while (k < got.size() && k < c.ids.size() && got[k] == c.ids[k]) ++k;
      ADD_FAILURE() << "case " << i << " (parse_special=" << c.parse_special << ") "
                    << escaped(c.text) << "\n  first difference at token " << k
                    << "\n  HF:   " << describe(*C.tok, c.ids) << "\n  ours: " << describe(*C.tok, got);
    }
  }
  EXPECT_EQ(failures, 0u) << failures << " of " << C.cases.size() << " cases differ";
  std::cout << "[ CORPUS   ] " << C.cases.size() << " cases, " << tokens << " tokens\n";
}

TEST(TokenizerCorpus, DecodeRoundTripsAndStreams) {
  REQUIRE_CORPUS();
  for (size_t i = 0; i < C.cases.size(); ++i) {
    const Case& c = C.cases[i];
    const std::vector<TokenId> ids = C.tok->encode(c.text, {false, c.parse_special});
    // Special tokens decode to their text only when shown.
    const std::string whole = C.tok->decode(ids, {.show_special = true});
    ASSERT_EQ(whole, c.text) << "case " << i;
    for (const bool show : {false, true}) {
      StreamDecoder stream(*C.tok, {.show_special = show});
      std::string streamed;
      for (TokenId id : ids) {
        const std::string part = stream.push(id);
        ASSERT_TRUE(is_valid_utf8(part)) << "case " << i << ": incomplete UTF-8 released";
        streamed += part;
      }
      streamed += stream.finish();
      ASSERT_EQ(streamed, C.tok->decode(ids, {.show_special = show})) << "case " << i;
    }
  }
}

}  // namespace
