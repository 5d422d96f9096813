#include "text/bpe.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <functional>

#include "core/error.h"
#include "text/unicode.h"

namespace tandem::text {

void MergeTable::reserve(size_t n) {
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, n * 2));
  slots_.assign(capacity, Entry{});
  mask_ = capacity - 1;
}

void MergeTable::insert(TokenId left, TokenId right, int32_t rank, TokenId merged) {
  const uint64_t key = make_key(left, right);
  for (uint64_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == key) return;  // a repeated merge keeps its first (best) rank
    if (e.key == ~0ull) {
      e = Entry{key, rank, merged};
      return;
    }
  }
}

BpeModel::BpeModel(const Vocab& vocab, bool ignore_merges)
    : vocab_(&vocab), ignore_merges_(ignore_merges) {
  const ByteLevelTable& table = byte_level_table();
  for (int b = 0; b < 256; ++b) byte_token_[b] = vocab.find(table.byte_to_utf8[b]);

  // Merges are "left right"; the first space after position 0 separates the halves.
  // A merge whose halves or result are not tokens can never apply and is skipped.
  merges_.reserve(vocab.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const std::string& m = vocab.merges[rank];
    const size_t space = m.find(' ', 1);
    if (space == std::string::npos) fail("tokenizer.ggml.merges[{}] '{}' has no space", rank, m);
    const std::string_view left(m.data(), space), right(m.data() + space + 1, m.size() - space - 1);
    const TokenId l = vocab.find(left), r = vocab.find(right);
    joined.assign(left);
    joined.append(right);
    const TokenId merged = vocab.find(joined);
    if (l == kNoToken || r == kNoToken || merged == kNoToken) continue;
    merges_.insert(l, r, static_cast<int32_t>(rank), merged);
  }
}

int32_t BpeModel::pair_rank(const BpeScratch::Symbol& a, const BpeScratch::Symbol& b) const {
  const MergeTable::Entry* e = merges_.find(a.id, b.id);
  return e ? e->rank : INT32_MAX;
}

// Short pieces: keep each symbol's rank with its right neighbour and scan for the best.
void BpeModel::merge_short(BpeScratch& s) const {
  auto& sym = s.symbols;
  for (;;) {
    int32_t best = INT32_MAX, at = -1;
    for (int32_t i = 0; i != -1; i = sym[i].next) {
      if (sym[i].pair_rank < best) {
        best = sym[i].pair_rank;
        at = i;
      }
    }
    if (at < 0) return;
    BpeScratch::Symbol& left = sym[at];
    const int32_t right = left.next;
    left.id = merges_.find(left.id, sym[right].id)->merged;
    left.next = sym[right].next;
    if (left.next != -1) sym[left.next].prev = at;
    left.pair_rank = left.next != -1 ? pair_rank(left, sym[left.next]) : INT32_MAX;
    if (left.prev != -1) sym[left.prev].pair_rank = pair_rank(sym[left.prev], left);
  }
}

// Long pieces: a min-heap of (rank, position); stale entries are skipped when popped.
void BpeModel::merge_long(BpeScratch& s) const {
  auto& sym = s.symbols;
  auto& heap = s.heap;
  heap.clear();
  const auto push = [&](int32_t i) {
    if (sym[i].pair_rank != INT32_MAX) {
      heap.push_back((uint64_t(uint32_t(sym[i].pair_rank)) << 32) | uint32_t(i));
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i != -1; i = sym[i].next) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t top = heap.back();
    heap.pop_back();
    const int32_t at = static_cast<int32_t>(top & 0xffffffffu);
    const int32_t rank = static_cast<int32_t>(top >> 32);
    BpeScratch::Symbol& left = sym[at];
    // Dead symbols have id kNoToken; a changed neighbour changes pair_rank.
    if (left.id == kNoToken || left.next == -1 || left.pair_rank != rank) continue;
    const int32_t right = left.next;
    left.id = merges_.find(left.id, sym[right].id)->merged;
    sym[right].id = kNoToken;
    left.next = sym[right].next;
    if (left.next != -1) sym[left.next].prev = at;
    left.pair_rank = left.next != -1 ? pair_rank(left, sym[left.next]) : INT32_MAX;
    push(at);
    if (left.prev != -1) {
      BpeScratch::Symbol& p = sym[left.prev];
      p.pair_rank = pair_rank(p, left);
      push(left.prev);
    }
  }
}

void BpeModel::encode_piece(std::string_view piece, std::vector<TokenId>& out,
                            BpeScratch& s) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    const ByteLevelTable& table = byte_level_table();
    s.encoded.clear();
    for (unsigned char c : piece) s.encoded += table.byte_to_utf8[c];
    const TokenId whole = vocab_->find(s.encoded);
    if (whole != kNoToken) {
      out.push_back(whole);
      return;
    }
  }
  auto& sym = s.symbols;
  sym.resize(piece.size());
  const int32_t n = static_cast<int32_t>(piece.size());
  for (int32_t i = 0; i < n; ++i) {
    const TokenId id = byte_token_[static_cast<unsigned char>(piece[i])];
    if (id == kNoToken) {
      fail("the vocabulary has no token for byte 0x{:02X} (byte-level BPE needs all 256)",
           static_cast<unsigned char>(piece[i]));
    }
    sym[i] = {id, i - 1, i + 1 < n ? i + 1 : -1, INT32_MAX};
  }
  for (int32_t i = 0; i + 1 < n; ++i) sym[i].pair_rank = pair_rank(sym[i], sym[i + 1]);
  constexpr int32_t kShortPiece = 64;  // beyond this the quadratic scan loses to a heap
  if (n <= kShortPiece) merge_short(s);
  else merge_long(s);
  for (int32_t i = 0; i != -1; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace tandem::text
