// SentencePiece-style BPE (tokenizer.ggml.model = "llama"): symbols start as UTF-8
// characters; the adjacent pair whose concatenation is the token with the highest score
// is merged first (leftmost on ties). Characters no token covers fall back to <0xXX>
// byte tokens. Spaces must already be escaped as U+2581 by the caller.
#pragma once

#include <array>
#include <string_view>
#include <vector>

#include "text/vocab.h"

namespace tandem::text {

struct SpmScratch {
  struct Symbol {
    uint32_t begin, size;  // bytes of the text; size 0 once merged away
    int32_t prev, next;
  };
  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t size;
  };
  std::vector<Symbol> symbols;
  std::vector<Bigram> heap;
};

class SpmModel {
 public:
  explicit SpmModel(const Vocab& vocab);
  void encode(std::string_view text, std::vector<TokenId>& out, SpmScratch& s) const;
  TokenId byte_token(uint8_t b) const { return byte_token_[b]; }

 private:
  void try_add(std::string_view text, SpmScratch& s, int32_t left, int32_t right) const;

  const Vocab* vocab_;
  std::array<TokenId, 256> byte_token_;
};

}  // namespace tandem::text
