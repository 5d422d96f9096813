// Unit tests of the tokenizer pieces that need no oracle: UTF-8 helpers, streaming over
// byte tokens, special-token parsing on/off, BOS/EOS flags, errors.
#include <gtest/gtest.h>

#include "core/error.h"
#include "support/test_support.h"
#include "text/detokenizer.h"
#include "text/tokenizer.h"
#include "text/pretokenizer.h"
#include "text/unicode.h"

namespace fs = std::filesystem;
using namespace tandem::text;

namespace {

TEST(Utf8, IncompleteTail) {
  EXPECT_EQ(incomplete_utf8_tail(""), 0u);
  EXPECT_EQ(incomplete_utf8_tail("abc"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("a\xE2\x96"), 2u);
  EXPECT_EQ(incomplete_utf8_tail("a\xE2\x96\x81"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(incomplete_utf8_tail("\xF0"), 1u);
  EXPECT_EQ(incomplete_utf8_tail("\x80\x80"), 0u);  // stray continuations are not held
  EXPECT_TRUE(is_valid_utf8("h\xC3\xA9llo"));
  EXPECT_FALSE(is_valid_utf8("\xC0\x80"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // past U+10FFFF
}

TEST(ByteLevel, TableIsABijection) {
  const ByteLevelTable& t = byte_level_table();
  for (int b = 0; b < 256; ++b) {
    size_t pos = 0;
    EXPECT_EQ(t.byte_of(next_codepoint(t.byte_to_utf8[b], pos)), b);
  }
  EXPECT_EQ(t.byte_to_utf8[' '], "\xC4\xA0");  // U+0120 'Ġ'
  EXPECT_EQ(t.byte_to_utf8['A'], "A");
}

const Tokenizer& qwen3() {
  static const Tokenizer tok = Tokenizer::open(fs::path(TANDEM_TOKENIZER_BUILD_DIR) / "qwen3-vocab.gguf");
  return tok;
}

TEST(SpecialTokens, ParsedOnlyWhenAsked) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  const Tokenizer& tok = qwen3();
  const std::string text = "<|im_start|>user\nhi<|im_end|>";
  const auto plain = tok.encode(text, {false, false});
  const auto parsed = tok.encode(text, {false, true});
  const TokenId im_start = tok.vocab().find("<|im_start|>");
  const TokenId im_end = tok.vocab().find("<|im_end|>");
  ASSERT_NE(im_start, kNoToken);
  EXPECT_EQ(parsed.front(), im_start);
  EXPECT_EQ(parsed.back(), im_end);
  for (TokenId id : plain) EXPECT_FALSE(tok.vocab().is_control(id)) << id;
  EXPECT_EQ(tok.decode(plain), text);  // plain text decodes back to itself
  EXPECT_EQ(tok.decode(parsed), "user\nhi");  // control tokens hidden by default
  EXPECT_EQ(tok.decode(parsed, {.show_special = true}), text);
  // User-defined added tokens (not special in HF) are always matched, as HF does.
  const auto think = tok.encode("<think>x</think>", {false, false});
  EXPECT_EQ(think.front(), tok.vocab().find("<think>"));
}

TEST(SpecialTokens, BosEosFollowTheVocabularyFlags) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  const Tokenizer spm = Tokenizer::open(shared / "data" / "vocab" / "ggml-vocab-llama-spm.gguf");
  ASSERT_TRUE(spm.vocab().add_bos);
  const auto with = spm.encode("Hello", {true, false});
  const auto without = spm.encode("Hello", {false, false});
  ASSERT_EQ(with.size(), without.size() + 1);
  EXPECT_EQ(with.front(), spm.vocab().bos);
  EXPECT_EQ(spm.decode(with), "Hello");
  EXPECT_EQ(spm.decode(without), "Hello");
  // Qwen3 asks for neither.
  EXPECT_EQ(qwen3().encode("Hello", {true, false}), qwen3().encode("Hello", {false, false}));
}

TEST(Streaming, ByteFallbackCharactersComeOutWhole) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  const Tokenizer spm = Tokenizer::open(shared / "data" / "vocab" / "ggml-vocab-llama-spm.gguf");
  const std::string text = "a 𝄞 🧑‍🚀 ⿰ b";  // rare characters fall back to <0xXX> tokens
  const auto ids = spm.encode(text, {false, false});
  size_t byte_tokens = 0;
  for (TokenId id : ids) byte_tokens += spm.vocab().type(id) == TokenType::Byte;
  EXPECT_GT(byte_tokens, 3u);
  StreamDecoder stream(spm);
  std::string out;
  for (TokenId id : ids) {
    const std::string part = stream.push(id);
    EXPECT_TRUE(is_valid_utf8(part));
    out += part;
  }
  out += stream.finish();
  EXPECT_EQ(out, text);
  EXPECT_EQ(spm.decode(ids), text);
}

TEST(Streaming, FinishReturnsAnUnfinishedSequence) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  const Tokenizer& tok = qwen3();
  const auto ids = tok.encode("\xF0\x9F", {false, false});  // half an emoji: bytes survive
  StreamDecoder stream(tok);
  std::string out;
  for (TokenId id : ids) out += stream.push(id);
  EXPECT_EQ(out, "");
  EXPECT_EQ(stream.finish(), "\xF0\x9F");
}

TEST(Errors, NamedClearly) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  EXPECT_THROW(Tokenizer::open("/nonexistent/vocab.gguf"), tandem::Error);
  EXPECT_THROW(qwen3().piece(-1), tandem::Error);
  EXPECT_THROW(qwen3().piece(1 << 30), tandem::Error);
  try {
    pre_tokenizer_patterns("no-such-pre");
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'no-such-pre'"), std::string::npos);
  }
}

}  // namespace
