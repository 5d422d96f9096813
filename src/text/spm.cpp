#include "text/spm.h"

#include <algorithm>

#include "core/error.h"
#include "text/unicode.h"

namespace tandem::text {

namespace {

// Heap order: highest score on top, then the leftmost pair.
bool lower_priority(const SpmScratch::Bigram& a, const SpmScratch::Bigram& b) {
  return a.score < b.score || (a.score == b.score && a.left > b.left);
}

}  // namespace

SpmModel::SpmModel(const Vocab& vocab) : vocab_(&vocab) {
  for (int b = 0; b < 256; ++b) {
    byte_token_[b] = vocab.find(fmt::format("<0x{:02X}>", b));
  }
}

void SpmModel::try_add(std::string_view text, SpmScratch& s, int32_t left, int32_t right) const {
  if (left == -1 || right == -1) return;
  const auto& a = s.symbols[left];
  const auto& b = s.symbols[right];
  const TokenId id = vocab_->find(text.substr(a.begin, a.size + b.size));
  if (id == kNoToken) return;
  s.heap.push_back({vocab_->scores[static_cast<size_t>(id)], left, right, a.size + b.size});
  std::push_heap(s.heap.begin(), s.heap.end(), lower_priority);
}

void SpmModel::encode(std::string_view text, std::vector<TokenId>& out, SpmScratch& s) const {
  if (text.empty()) return;
  auto& sym = s.symbols;
  sym.clear();
  s.heap.clear();
  for (size_t pos = 0; pos < text.size();) {
    const uint32_t n = static_cast<uint32_t>(std::min(utf8_seq_len(uint8_t(text[pos])), text.size() - pos));
    const int32_t index = static_cast<int32_t>(sym.size());
    sym.push_back({static_cast<uint32_t>(pos), n, index - 1, pos + n < text.size() ? index + 1 : -1});
    pos += n;
  }
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(text, s, i - 1, i);

  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), lower_priority);
    const SpmScratch::Bigram bigram = s.heap.back();
    s.heap.pop_back();
    auto& left = sym[bigram.left];
    auto& right = sym[bigram.right];
    // Stale: one side was merged away or grew since this pair was queued.
    if (left.size == 0 || right.size == 0 || left.size + right.size != bigram.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next != -1) sym[right.next].prev = bigram.left;
    try_add(text, s, left.prev, bigram.left);
    try_add(text, s, bigram.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = sym[i].next) {
    const std::string_view piece = text.substr(sym[i].begin, sym[i].size);
    const TokenId id = vocab_->find(piece);
    if (id != kNoToken) {
      out.push_back(id);
      continue;
    }
    for (unsigned char c : piece) {  // byte fallback
      TokenId b = byte_token_[c];
      if (b == kNoToken) b = vocab_->unk;
      if (b == kNoToken) fail("no token for byte 0x{:02X} and no unknown token in the vocabulary", c);
      out.push_back(b);
    }
  }
}

}  // namespace tandem::text
