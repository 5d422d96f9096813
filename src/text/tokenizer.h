// Text -> token ids for a model's vocabulary, as llama.cpp reads it from GGUF
// (tokenizer.ggml.*): byte-level BPE ("gpt2") with the pre-tokenizer named by
// tokenizer.ggml.pre, or SentencePiece-style BPE ("llama") with byte fallback.
//
// Special tokens: control and unknown tokens are recognised in the text only with
// parse_special; user-defined tokens (added tokens that are not special, e.g. Qwen's
// <think>) are always recognised, as HF tokenizers and llama.cpp do. So user content
// tokenized without parse_special can never produce a control token.
#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.h"
#include "text/vocab.h"

namespace tandem::text {

struct EncodeOptions {
  bool add_special = false;    // add BOS/EOS as tokenizer.ggml.add_bos/eos_token say
  bool parse_special = false;  // match control tokens' texts in the input
  // Byte ranges [first, second) of the input where no special token is matched at all,
  // even with parse_special (text a user wrote, inside a template's markup). Sorted.
  std::span<const std::pair<size_t, size_t>> plain_ranges;
};

struct DecodeOptions {
  bool show_special = false;  // render control/unknown tokens as their text
  // SentencePiece vocabularies with add_space_prefix: drop the one space that encoding put
  // before the text (from the first token that is not BOS).
  bool strip_space_prefix = true;
};

class Tokenizer {
 public:
  static Tokenizer from_gguf(const gguf::File& file);
  // Opens a GGUF file (the first part of a split model holds the vocabulary).
  static Tokenizer open(const std::filesystem::path& path);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  const Vocab& vocab() const;

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Appends to `out`. Thread-safe: scratch space is per thread.
  void encode(std::string_view text, const EncodeOptions& options, std::vector<TokenId>& out) const;

  // The bytes a token stands for (control tokens as their text; unused tokens empty).
  const std::string& piece(TokenId id) const;
  // Whether decode hides this token unless show_special is set.
  bool hidden_unless_special(TokenId id) const;
  // Whether strip_space_prefix applies to this vocabulary.
  bool strips_space_prefix() const;

  std::string decode(std::span<const TokenId> ids, const DecodeOptions& options = {}) const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::text
