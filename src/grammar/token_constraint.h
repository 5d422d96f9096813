// Which tokens a grammar allows next, without scanning the vocabulary.
//
// TokenTrie: every token's bytes in one trie laid out in depth-first order (node i's
// subtree is [i, end[i])), so a walk is a loop over an array that skips a whole subtree
// the moment the grammar rejects its first byte. Built once per tokenizer (shared).
// Control and unknown tokens are not in it: they never match grammar text. A subtree of
// printable-ASCII bytes under a state that loops on them (inside a JSON string) is taken
// whole: its tokens are one contiguous run, no byte of it is walked; likewise a first-byte
// subtree of well-formed UTF-8 text under a state that loops on every character.
//
// TokenConstraint: the grammar state of one generation. allows(t) walks one token's bytes
// (the cheap check of the sampler's choice); allowed() lists every allowed token by walking
// the trie together with the Matcher's DFA; end-of-generation tokens are allowed exactly
// when the text so far is a complete sentence. Buffers are reused: no allocation per token
// once the DFA's states for the grammar's positions have been built.
#pragma once

#include <memory>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

#include "grammar/matcher.h"
#include "text/tokenizer.h"

namespace tandem::grammar {

class TokenTrie {
 public:
  explicit TokenTrie(const text::Tokenizer& tokenizer);
  // The trie of `tokenizer`, built on first use and shared by later calls.
  static std::shared_ptr<const TokenTrie> of(const text::Tokenizer& tokenizer);

  // Appends to `out` every token whose whole byte string the grammar allows from `s`.
  // `states` is scratch (one state per trie depth).
  void allowed(Matcher& m, Matcher::State s, std::vector<text::TokenId>& out, std::vector<Matcher::State>& states) const;
  size_t node_count() const { return bytes_.size(); }
  size_t max_depth() const { return max_depth_; }

 private:
  // Node i: the byte on the edge into it, its depth (1 = first byte), the end of its
  // subtree, and the tokens whose bytes end at it (tokens_[token_begin_[i]..token_begin_[i+1])).
  std::vector<uint8_t> bytes_;
  std::vector<uint16_t> depth_;
  std::vector<uint32_t> end_;
  std::vector<uint32_t> token_begin_;
  std::vector<uint8_t> plain_subtree_;  // node i and all below it are Matcher::plain_byte
  std::vector<uint8_t> text_subtree_;   // every path through node i (from the root) is plain UTF-8 text
  std::vector<text::TokenId> tokens_;
  size_t max_depth_ = 0;
};

class TokenConstraint {
 public:
  TokenConstraint(std::shared_ptr<const Grammar> grammar, const text::Tokenizer& tokenizer,
                  const std::set<text::TokenId>& end_of_generation);

  // Whether `token` may come next.
  bool allows(text::TokenId token);
  // Every token that may come next, in no particular order (valid until the next call).
  std::span<const text::TokenId> allowed();
  // Moves past `token`; false (state unchanged) if the grammar does not allow it.
  bool accept(text::TokenId token);
  // Moves past raw bytes (text that is already in the context, e.g. a forced prefix).
  bool accept_bytes(std::string_view bytes);
  // Back to the start of the grammar (the DFA built so far is kept).
  void restart() { state_ = matcher_.start(); }
  // The text so far is a complete sentence / nothing more may follow it.
  bool complete() const { return matcher_.accepting(state_); }
  bool finished() const { return complete() && !matcher_.can_continue(state_); }

  Matcher& matcher() { return matcher_; }
  Matcher::State state() const { return state_; }

 private:
  bool special(text::TokenId t) const { return tokenizer_->hidden_unless_special(t); }

  Matcher matcher_;
  Matcher::State state_;
  std::shared_ptr<const TokenTrie> trie_;
  const text::Tokenizer* tokenizer_;
  std::vector<text::TokenId> eog_;
  std::vector<text::TokenId> allowed_;
  std::vector<Matcher::State> depth_states_;
  // Masks by DFA state: a state comes back often (inside every unbounded string, after each
  // comma of a list), and its mask is the same each time. Dropped past kMaskCacheTokens.
  static constexpr size_t kMaskCacheTokens = size_t{8} << 20;  // 32 MiB of token ids
  std::unordered_map<Matcher::State, std::vector<text::TokenId>> mask_cache_;
  size_t mask_cache_tokens_ = 0;
};

}  // namespace tandem::grammar
