#include "backend/cuda/expert_groups.h"

#include <algorithm>

#include "core/error.h"

namespace tandem::cuda {

int64_t max_expert_rows(int64_t n_slots, int64_t n_expert) {
  return n_slots + std::min(n_slots, n_expert) * (kChunkTokens - 1);
}

void group_slots_by_expert(std::span<const int32_t> ids, int64_t k, int64_t n_expert, int64_t gemm_min_tokens,
                           ExpertGroups& out) {
  const auto n_slots = static_cast<int64_t>(ids.size());
  if (k <= 0 || n_slots % k != 0) fail("MoE grouping: {} slots are not a whole number of tokens of {} experts", n_slots, k);
  // Pass 1: tokens per expert, then each expert's first row.
  std::vector<int64_t>& count = out.counts;
  std::vector<int64_t>& next = out.next_row;
  count.assign(static_cast<size_t>(n_expert), 0);
  next.assign(static_cast<size_t>(n_expert), 0);
  for (int64_t s = 0; s < n_slots; ++s) {
    const int32_t e = ids[static_cast<size_t>(s)];
    if (e < 0 || e >= n_expert) fail("MoE grouping: token {} chose expert {} of {}", s / k, e, n_expert);
    ++count[static_cast<size_t>(e)];
  }
  const auto chunked = [&](int64_t e) {
    const int64_t c = count[static_cast<size_t>(e)];
    return c > 0 && c < gemm_min_tokens;
  };
  out.chunk_expert.clear();
  out.gemms.clear();
  int64_t row = 0;
  for (int64_t e = 0; e < n_expert; ++e) {  // chunked experts first, padded
    if (!chunked(e)) continue;
    const int64_t chunks = (count[static_cast<size_t>(e)] + kChunkTokens - 1) / kChunkTokens;
    out.chunk_expert.insert(out.chunk_expert.end(), static_cast<size_t>(chunks), static_cast<int32_t>(e));
    next[static_cast<size_t>(e)] = row;
    row += chunks * kChunkTokens;
  }
  out.chunk_rows = row;
  for (int64_t e = 0; e < n_expert; ++e) {  // then the GEMM experts, unpadded
    const int64_t c = count[static_cast<size_t>(e)];
    if (c == 0 || chunked(e)) continue;
    out.gemms.push_back({static_cast<int32_t>(e), row, c});
    next[static_cast<size_t>(e)] = row;
    row += c;
  }
  out.rows = row;
  // Pass 2: each slot takes its expert's next row, in slot order.
  out.row_token.assign(static_cast<size_t>(row), -1);
  out.slot_row.resize(static_cast<size_t>(n_slots));
  for (int64_t s = 0; s < n_slots; ++s) {
    const int64_t r = next[static_cast<size_t>(ids[static_cast<size_t>(s)])]++;
    out.row_token[static_cast<size_t>(r)] = static_cast<int32_t>(s / k);
    out.slot_row[static_cast<size_t>(s)] = static_cast<int32_t>(r);
  }
}

}  // namespace tandem::cuda
