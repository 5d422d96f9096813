// Pre-tokenization for byte-level BPE: the text is cut into pieces by a sequence of
// regular expressions chosen by tokenizer.ggml.pre. Each expression is applied to every
// piece the previous one produced; matches and the text between them both become pieces
// (HF tokenizers' Split with behavior "Isolated"). PCRE2 with UTF + UCP + JIT.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::text {

struct Span {
  uint32_t begin = 0, end = 0;
};

// The expressions for a tokenizer.ggml.pre value; throws naming the value if unknown.
// `ignore_merges` is set for vocabularies whose whole pieces are looked up first.
std::vector<std::string> pre_tokenizer_patterns(std::string_view pre, bool* ignore_merges = nullptr);

class PreTokenizer {
 public:
  explicit PreTokenizer(const std::vector<std::string>& patterns);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Appends the pieces of `text` (offsets into it) to `out`; `scratch` is reused storage.
  // Invalid UTF-8 is allowed: bytes no expression can match end up as pieces of their own.
  void split(std::string_view text, std::vector<Span>& out, std::vector<Span>& scratch) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> regexes_;
};

}  // namespace tandem::text
