// A tokenizer vocabulary as llama.cpp's GGUF converter stores it (tokenizer.ggml.*):
// token texts, types, scores, special ids and the add_bos/add_eos flags, plus a fast
// text -> id index. Model-specific encoding lives in bpe.h / spm.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.h"

namespace tandem::text {

using TokenId = int32_t;
constexpr TokenId kNoToken = -1;

// The values of tokenizer.ggml.token_type (gguf-py's TokenType).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

enum class VocabKind { Bpe, Spm };  // tokenizer.ggml.model "gpt2" / "llama"

// Open-addressing hash map from token text to id. The texts are views into the vocab's
// own strings, so lookups by string_view never allocate.
class TokenIndex {
 public:
  void build(const std::vector<std::string>& texts);
  TokenId find(std::string_view text) const;

 private:
  struct Slot {
    uint64_t hash = 0;
    const std::string* text = nullptr;
    TokenId id = kNoToken;
  };
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
};

uint64_t hash_bytes(std::string_view s);

struct Vocab {
  Vocab() = default;
  Vocab(Vocab&&) = default;
  Vocab& operator=(Vocab&&) = default;
  Vocab(const Vocab&) = delete;  // index points into texts
  Vocab& operator=(const Vocab&) = delete;

  VocabKind kind = VocabKind::Bpe;
  std::string model;  // tokenizer.ggml.model
  std::string pre;    // tokenizer.ggml.pre ("default" when absent)
  std::vector<std::string> texts;
  std::vector<TokenType> types;
  std::vector<float> scores;  // SPM only (empty otherwise)
  std::vector<std::string> merges;  // BPE only, "left right" per rank
  TokenIndex index;

  TokenId bos = kNoToken, eos = kNoToken, unk = kNoToken, pad = kNoToken;
  bool add_bos = false, add_eos = false;
  bool add_space_prefix = false;  // SPM: a space is put before text at the start/after specials

  static Vocab from_gguf(const gguf::File& file);

  size_t size() const { return texts.size(); }
  TokenId find(std::string_view text) const { return index.find(text); }
  TokenType type(TokenId id) const { return types[static_cast<size_t>(id)]; }
  bool valid(TokenId id) const { return id >= 0 && static_cast<size_t>(id) < texts.size(); }
  // Control and unknown tokens are "special": hidden when detokenizing without show_special
  // and matched in text only when parse_special is asked for.
  bool is_control(TokenId id) const {
    const TokenType t = type(id);
    return t == TokenType::Control || t == TokenType::Unknown;
  }
};

}  // namespace tandem::text
