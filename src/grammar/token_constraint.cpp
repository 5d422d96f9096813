#include "grammar/token_constraint.h"

#include <algorithm>
#include <mutex>
#include <numeric>

#include "core/error.h"

namespace tandem::grammar {

TokenTrie::TokenTrie(const text::Tokenizer& tokenizer) {
  const text::Vocab& vocab = tokenizer.vocab();
  std::vector<text::TokenId> ids;
  ids.reserve(vocab.size());
  for (size_t i = 0; i < vocab.size(); ++i) {
    const auto id = static_cast<text::TokenId>(i);
    if (!tokenizer.hidden_unless_special(id) && !tokenizer.piece(id).empty()) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end(), [&](text::TokenId a, text::TokenId b) {
    const std::string &pa = tokenizer.piece(a), &pb = tokenizer.piece(b);
    return pa != pb ? pa < pb : a < b;
  });
  // Sorted pieces: each one shares a prefix with the path to the previous one; the rest
  // becomes new nodes in depth-first order.
  std::vector<uint32_t> path;  // node per depth of the current piece
  std::string_view prev;
  for (text::TokenId id : ids) {
    const std::string& p = tokenizer.piece(id);
    size_t common = 0;
    while (common < prev.size() && common < p.size() && prev[common] == p[common]) ++common;
    while (path.size() > common) {
      end_[path.back()] = static_cast<uint32_t>(bytes_.size());
      path.pop_back();
    }
    for (size_t d = common; d < p.size(); ++d) {
      path.push_back(static_cast<uint32_t>(bytes_.size()));
      bytes_.push_back(static_cast<uint8_t>(p[d]));
      depth_.push_back(static_cast<uint16_t>(std::min<size_t>(d + 1, UINT16_MAX)));
      end_.push_back(0);
      token_begin_.push_back(static_cast<uint32_t>(tokens_.size()));
    }
    tokens_.push_back(id);  // ends at path.back(), the newest node (or its duplicate piece)
    max_depth_ = std::max(max_depth_, p.size());
    prev = p;
  }
  for (uint32_t n : path) end_[n] = static_cast<uint32_t>(bytes_.size());
  token_begin_.push_back(static_cast<uint32_t>(tokens_.size()));
  // plain_subtree_: no byte in [i, end_[i]) outside the plain set (prefix counts of the others).
  std::vector<uint32_t> others(bytes_.size() + 1, 0);
  for (size_t i = 0; i < bytes_.size(); ++i) others[i + 1] = others[i] + !Matcher::plain_byte(bytes_[i]);
  plain_subtree_.resize(bytes_.size());
  for (size_t i = 0; i < bytes_.size(); ++i) plain_subtree_[i] = others[end_[i]] == others[i];
  // text_subtree_: every node in [i, end_[i]) ends a path that is well-formed UTF-8 text so far.
  std::vector<int> checker(max_depth_ + 1, 0);
  for (size_t i = 0; i < bytes_.size(); ++i) {
    const size_t d = depth_[i];
    const int before = checker[d - 1];
    checker[d] = before < 0 ? -1 : Matcher::text_step(before, bytes_[i]);
    others[i + 1] = others[i] + (checker[d] < 0);
  }
  text_subtree_.resize(bytes_.size());
  for (size_t i = 0; i < bytes_.size(); ++i) text_subtree_[i] = others[end_[i]] == others[i];
  if (max_depth_ >= UINT16_MAX) fail("a token of {} bytes is too long for the grammar trie", max_depth_);
}

std::shared_ptr<const TokenTrie> TokenTrie::of(const text::Tokenizer& tokenizer) {
  // Keyed by the tokenizer and checked against its pieces' addresses, so a tokenizer made
  // later at the same address is never given a stale trie.
  struct Entry {
    const text::Tokenizer* tokenizer;
    size_t size;
    const char* first;
    const char* last;
    std::shared_ptr<const TokenTrie> trie;
  };
  static std::mutex m;
  static std::vector<Entry> cache;
  const size_t n = tokenizer.vocab().size();
  const char* first = n ? tokenizer.piece(0).data() : nullptr;
  const char* last = n ? tokenizer.piece(static_cast<text::TokenId>(n - 1)).data() : nullptr;
  std::lock_guard<std::mutex> lock(m);
  for (const Entry& e : cache) {
    if (e.tokenizer == &tokenizer && e.size == n && e.first == first && e.last == last) return e.trie;
  }
  auto trie = std::make_shared<const TokenTrie>(tokenizer);
  if (cache.size() >= 8) cache.erase(cache.begin());
  cache.push_back({&tokenizer, n, first, last, trie});
  return trie;
}

void TokenTrie::allowed(Matcher& m, Matcher::State s, std::vector<text::TokenId>& out,
                        std::vector<Matcher::State>& states) const {
  if (s == Matcher::kDead) return;
  states.resize(max_depth_ + 1);
  states[0] = s;
  const size_t n = bytes_.size();
  for (size_t i = 0; i < n;) {
    const size_t d = depth_[i];
    if ((plain_subtree_[i] && m.loops_on_plain(states[d - 1])) ||
        (d == 1 && text_subtree_[i] && m.loops_on_text(states[0]))) {
      out.insert(out.end(), tokens_.begin() + token_begin_[i], tokens_.begin() + token_begin_[end_[i]]);
      i = end_[i];
      continue;
    }
    const Matcher::State next = m.step(states[d - 1], bytes_[i]);
    if (next == Matcher::kDead) {
      i = end_[i];  // no token below this node can match
      continue;
    }
    states[d] = next;
    for (uint32_t k = token_begin_[i]; k < token_begin_[i + 1]; ++k) out.push_back(tokens_[k]);
    ++i;
  }
}

TokenConstraint::TokenConstraint(std::shared_ptr<const Grammar> grammar, const text::Tokenizer& tokenizer,
                                 const std::set<text::TokenId>& end_of_generation)
    : matcher_(std::move(grammar)),
      state_(matcher_.start()),
      trie_(TokenTrie::of(tokenizer)),
      tokenizer_(&tokenizer),
      eog_(end_of_generation.begin(), end_of_generation.end()) {
  allowed_.reserve(tokenizer.vocab().size());
}

bool TokenConstraint::allows(text::TokenId token) {
  if (std::find(eog_.begin(), eog_.end(), token) != eog_.end()) return complete();
  if (token < 0 || static_cast<size_t>(token) >= tokenizer_->vocab().size() || special(token)) return false;
  const std::string& p = tokenizer_->piece(token);
  return !p.empty() && matcher_.walk(state_, p) != Matcher::kDead;
}

std::span<const text::TokenId> TokenConstraint::allowed() {
  auto it = mask_cache_.find(state_);
  if (it != mask_cache_.end()) return it->second;
  allowed_.clear();
  trie_->allowed(matcher_, state_, allowed_, depth_states_);
  if (complete()) allowed_.insert(allowed_.end(), eog_.begin(), eog_.end());
  if (mask_cache_tokens_ + allowed_.size() > kMaskCacheTokens) {
    mask_cache_.clear();
    mask_cache_tokens_ = 0;
  }
  mask_cache_tokens_ += allowed_.size();
  return mask_cache_.emplace(state_, allowed_).first->second;
}

bool TokenConstraint::accept(text::TokenId token) {
  if (!allows(token)) return false;
  if (std::find(eog_.begin(), eog_.end(), token) != eog_.end()) return true;
  state_ = matcher_.walk(state_, tokenizer_->piece(token));
  const size_t states = matcher_.state_count();
  matcher_.trim_cache(state_, 1 << 14);  // a grammar with very many positions: start the cache over
  if (matcher_.state_count() < states) {   // renumbered: the masks' keys mean other states now
    mask_cache_.clear();
    mask_cache_tokens_ = 0;
  }
  return true;
}

bool TokenConstraint::accept_bytes(std::string_view bytes) {
  const Matcher::State next = matcher_.walk(state_, bytes);
  if (next == Matcher::kDead) return false;
  state_ = next;
  return true;
}

}  // namespace tandem::grammar
