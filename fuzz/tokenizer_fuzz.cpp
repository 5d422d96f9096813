// libFuzzer target: random bytes through the tokenizer. The vocabulary is a GGUF named by
// TANDEM_FUZZ_VOCAB (e.g. build/release/tokenizer/qwen3-vocab.gguf or a file of
// ../shared/data/vocab). Checks: encode never crashes with or without parse_special;
// every id is in range; no control token without parse_special; decode(encode(x)) == x
// when x is valid UTF-8 (for SentencePiece: and holds no U+2581, its lossless cases); the
// streaming decoder gives the same text as decode.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "core/error.h"
#include "text/detokenizer.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace {

const tandem::text::Tokenizer& tokenizer() {
  static const std::unique_ptr<tandem::text::Tokenizer> tok = [] {
    const char* path = std::getenv("TANDEM_FUZZ_VOCAB");
    if (path == nullptr) {
      std::fprintf(stderr, "set TANDEM_FUZZ_VOCAB to a vocabulary GGUF\n");
      std::abort();
    }
    return std::make_unique<tandem::text::Tokenizer>(tandem::text::Tokenizer::open(path));
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem::text;
  const Tokenizer& tok = tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool bpe = tok.vocab().kind == VocabKind::Bpe;

  for (const bool parse_special : {false, true}) {
    std::vector<TokenId> ids;
    try {
      ids = tok.encode(text, {false, parse_special});
    } catch (const tandem::Error& e) {
      // Allowed only as the clear error for a byte the vocabulary has no token for (falcon
      // lacks some control bytes and 0xF5..0xFF): an error, not a crash or wrong ids.
      if (std::string_view(e.what()).find("has no token for byte") == std::string_view::npos) {
        std::fprintf(stderr, "unexpected error: %s\n", e.what());
        std::abort();
      }
      return 0;
    }
    for (TokenId id : ids) {
      if (!tok.vocab().valid(id)) std::abort();
    }
    if (parse_special) continue;
    // Without parse_special, control tokens never come out of text.
    for (TokenId id : ids) {
      if (tok.vocab().is_control(id)) std::abort();
    }
    const std::string decoded = tok.decode(ids);
    // SentencePiece is lossless for valid UTF-8 (byte fallback covers the rest of Unicode)
    // except that a literal U+2581 in the text decodes as the space it stands for.
    // Byte-level BPE is lossless for any bytes in principle, but some vocabularies (e.g.
    // deepseek-llm) shadow a byte's character token with a user-defined added token of the
    // same text ("\u00FC"), so a lone invalid byte decodes as that character (llama.cpp
    // does the same). The round trip is therefore asserted for valid UTF-8, as required.
    const bool lossless = is_valid_utf8(text) &&
                          (bpe || text.find("\xE2\x96\x81") == std::string_view::npos);
    if (lossless && decoded != text) {
      std::fprintf(stderr, "round trip differs: %zu bytes in, %zu out\n", text.size(), decoded.size());
      std::abort();
    }
    StreamDecoder stream(tok);
    std::string streamed;
    for (TokenId id : ids) {
      const std::string part = stream.push(id);
      if (incomplete_utf8_tail(part) != 0 && is_valid_utf8(text)) std::abort();
      streamed += part;
    }
    streamed += stream.finish();
    if (streamed != decoded) std::abort();
  }
  return 0;
}
