#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/pretokenizer.h"

#include <pcre2.h>

#include "core/error.h"
#include "text/unicode.h"

namespace tandem::text {

namespace {

// The expressions as written in the models' tokenizer.json files (HF tokenizers syntax).
// GPT-2's split, used alone or as one step by many vocabularies.
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Qwen2/2.5/3: single digits, letters may take one leading non-letter, case-insensitive
// contractions.
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen3.5: as Qwen2, with combining marks (\p{M}) counted as letters.
constexpr const char* kQwen35 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Llama 3: as Qwen2 with digits in groups of up to three.
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// DeepSeek LLM: letters of cased scripts (an explicit list), ASCII/full-width punctuation,
// trailing whitespace, CJK/Hangul runs and digit runs, each split in turn.
// (Written as code point escapes: the class lists look-alike letters such as U+212A.)
constexpr const char* kDeepseekLlmLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)";

// HF tokenizers' regex engine (Oniguruma) counts every White_Space character as \s, which
// includes U+0085 (NEL); PCRE2's UCP \s does not. Rewrites \s and \S to agree.
std::string hf_whitespace(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (e == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) in_class = true;
    else if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

std::vector<std::string> pre_tokenizer_patterns(std::string_view pre, bool* ignore_merges) {
  if (ignore_merges) *ignore_merges = false;
  const auto is = [&](std::initializer_list<std::string_view> names) {
    for (auto n : names) if (pre == n) return true;
    return false;
  };
  if (is({"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan"})) return {kQwen2};
  if (is({"qwen35"})) return {kQwen35};
  if (is({"llama3", "llama-v3", "llama-bpe", "dbrx", "smaug-bpe", "chatglm-bpe", "glm4"})) {
    if (ignore_merges && is({"llama3", "llama-v3", "llama-bpe"})) *ignore_merges = true;
    return {kLlama3};
  }
  if (is({"gpt-2", "mpt", "olmo", "jais", "phi-2", "jina-es", "jina-de", "jina-v2-es",
          "jina-v2-de", "gigachat", "exaone4", "trillion", "granite-docling"})) {
    return {kGpt2};
  }
  if (is({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"})) {
    return {R"(\p{N})", kGpt2};
  }
  if (is({"deepseek-coder"})) {
    return {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)", R"(\p{N})"};
  }
  if (is({"deepseek-llm"})) {
    return {R"([\r\n])", kDeepseekLlmLetters, R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)", R"(\s+$)",
            R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)", R"(\p{N}+)"};
  }
  if (is({"falcon"})) return {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"};
  if (is({"default"})) {
    return {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"};
  }
  fail("tokenizer.ggml.pre '{}' is not supported (supported: qwen2, qwen35, llama3/llama-bpe, "
       "gpt-2, mpt, starcoder, refact, deepseek-coder, deepseek-llm, falcon, default and aliases)",
       pre);
}

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const std::vector<std::string>& patterns) {
  for (const std::string& raw : patterns) {
    const std::string pattern = hf_whitespace(raw);
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    auto compiled = std::make_unique<Compiled>();
    // MATCH_INVALID_UTF: arbitrary bytes may be tokenized; invalid sequences never match
    // and so become pieces of their own, which byte-level BPE encodes losslessly.
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error,
                                   &error_offset, nullptr);
    if (compiled->code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      fail("pre-tokenizer regex '{}' does not compile at offset {}: {}", raw, error_offset,
           reinterpret_cast<const char*>(message));
    }
    compiled->jit = pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE) == 0;
    regexes_.push_back(std::move(compiled));
  }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

struct MatchData {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  ~MatchData() { pcre2_match_data_free(data); }
};

// Runs one expression over text[piece) and appends the matches and the gaps between them.
void split_piece(const pcre2_code* code, bool jit, std::string_view text, Span piece,
                 pcre2_match_data* md, std::vector<Span>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + piece.begin);
  const size_t length = piece.end - piece.begin;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  size_t start = 0, emitted = 0;
  while (start < length) {
    int rc = jit ? pcre2_jit_match(code, subject, length, start, 0, md, nullptr)
                 : pcre2_match(code, subject, length, start, 0, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // Deep backtracking on a huge input: the interpreter keeps its state on the heap.
      rc = pcre2_match(code, subject, length, start, PCRE2_NO_JIT, md, nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      fail("pre-tokenizer regex failed on a {}-byte piece: {}", length,
           reinterpret_cast<const char*>(message));
    }
    const size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match: step over one character, it stays in the gap
      start = b + std::max<size_t>(1, std::min(utf8_seq_len(subject[b]), length - b));
      continue;
    }
    if (b > emitted) out.push_back({piece.begin + uint32_t(emitted), piece.begin + uint32_t(b)});
    out.push_back({piece.begin + uint32_t(b), piece.begin + uint32_t(e)});
    emitted = start = e;
  }
  if (emitted < length) out.push_back({piece.begin + uint32_t(emitted), piece.end});
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<Span>& out,
                         std::vector<Span>& scratch) const {
  if (text.empty()) return;
  if (text.size() > UINT32_MAX) fail("text of {} bytes is too long to tokenize", text.size());
  thread_local MatchData md;
  const size_t base = out.size();
  out.push_back({0, static_cast<uint32_t>(text.size())});
  for (const auto& regex : regexes_) {
    scratch.assign(out.begin() + base, out.end());
    out.resize(base);
    for (const Span& piece : scratch) split_piece(regex->code, regex->jit, text, piece, md.data, out);
  }
}

}  // namespace tandem::text
