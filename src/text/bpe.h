// Byte-level BPE (tokenizer.ggml.model = "gpt2"): each pre-tokenized piece starts as one
// symbol per byte (the byte's GPT-2 character token) and adjacent symbols are merged by
// merge rank, lowest rank first and leftmost first among equal ranks, as HF tokenizers and
// llama.cpp do.
#pragma once

#include <array>
#include <string_view>
#include <vector>

#include "text/vocab.h"

namespace tandem::text {

// (left id, right id) -> (rank, merged id), open addressing on a 64-bit key.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = ~0ull;
    int32_t rank = 0;
    TokenId merged = kNoToken;
  };
  void reserve(size_t n);
  void insert(TokenId left, TokenId right, int32_t rank, TokenId merged);
  const Entry* find(TokenId left, TokenId right) const {
    const uint64_t key = make_key(left, right);
    for (uint64_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == ~0ull) return nullptr;
    }
  }

 private:
  static uint64_t make_key(TokenId l, TokenId r) {
    return (uint64_t(uint32_t(l)) << 32) | uint32_t(r);
  }
  static uint64_t mix(uint64_t k) {
    k ^= k >> 31;
    k *= 0x9E3779B97F4A7C15ull;
    return k ^ (k >> 29);
  }
  std::vector<Entry> slots_;
  uint64_t mask_ = 0;
};

struct BpeScratch {
  struct Symbol {
    TokenId id;
    int32_t prev, next;
    int32_t pair_rank;  // rank of the merge with the next symbol, or INT32_MAX
  };
  std::vector<Symbol> symbols;
  std::vector<uint64_t> heap;  // (rank << 32 | position) for long pieces
  std::string encoded;         // byte-level text of a piece (whole-piece lookups)
};

class BpeModel {
 public:
  // `ignore_merges`: a piece that is itself a token is emitted whole (llama3 convention).
  BpeModel(const Vocab& vocab, bool ignore_merges);

  // Appends the ids of one piece (raw bytes of the text).
  void encode_piece(std::string_view piece, std::vector<TokenId>& out, BpeScratch& s) const;

 private:
  int32_t pair_rank(const BpeScratch::Symbol& a, const BpeScratch::Symbol& b) const;
  void merge_short(BpeScratch& s) const;
  void merge_long(BpeScratch& s) const;

  const Vocab* vocab_;
  std::array<TokenId, 256> byte_token_;
  MergeTable merges_;
  bool ignore_merges_;
};

}  // namespace tandem::text
