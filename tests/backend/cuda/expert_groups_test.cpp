// The prompt-MoE row layout (expert_groups.h), device-free: every slot gets exactly one row
// of its own expert, chunks hold one expert each, padding is only what a chunk rounds up,
// the GEMM/chunk split follows the threshold, and bad ids are named.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "backend/cuda/expert_groups.h"
#include "core/error.h"

namespace tandem::cuda {
namespace {

// Checks every property of the layout of ids ([T][k] over n_expert) with the threshold.
void expect_valid_layout(const std::vector<int32_t>& ids, int64_t k, int64_t n_expert, int64_t gemm_min,
                         const ExpertGroups& g) {
  const auto n_slots = static_cast<int64_t>(ids.size());
  std::map<int32_t, int64_t> count;
  for (int32_t e : ids) ++count[e];
  ASSERT_EQ(g.chunk_rows % kChunkTokens, 0);
  ASSERT_EQ(static_cast<int64_t>(g.chunk_expert.size()), g.chunk_rows / kChunkTokens);
  ASSERT_EQ(static_cast<int64_t>(g.row_token.size()), g.rows);
  ASSERT_EQ(static_cast<int64_t>(g.slot_row.size()), n_slots);
  ASSERT_LE(g.rows, max_expert_rows(n_slots, n_expert));
  // The expert of each row: its chunk's, or its GEMM's.
  std::vector<int32_t> row_expert(static_cast<size_t>(g.rows), -1);
  for (int64_t r = 0; r < g.chunk_rows; ++r) row_expert[static_cast<size_t>(r)] = g.chunk_expert[static_cast<size_t>(r / kChunkTokens)];
  int64_t next = g.chunk_rows;
  for (const auto& gemm : g.gemms) {
    EXPECT_EQ(gemm.first_row, next) << "GEMM experts follow the chunks back to back";
    EXPECT_EQ(gemm.rows, count[gemm.expert]) << "a GEMM covers all of its expert's tokens";
    EXPECT_GE(gemm.rows, gemm_min) << "expert " << gemm.expert;
    for (int64_t r = gemm.first_row; r < gemm.first_row + gemm.rows; ++r) row_expert[static_cast<size_t>(r)] = gemm.expert;
    next += gemm.rows;
  }
  EXPECT_EQ(next, g.rows);
  // Every slot: one row, of its expert, taking its token; rows in slot order per expert.
  std::vector<int> used(static_cast<size_t>(g.rows), 0);
  std::map<int32_t, int32_t> last_row;
  for (int64_t s = 0; s < n_slots; ++s) {
    const int32_t r = g.slot_row[static_cast<size_t>(s)];
    ASSERT_TRUE(r >= 0 && r < g.rows) << "slot " << s;
    EXPECT_EQ(row_expert[static_cast<size_t>(r)], ids[static_cast<size_t>(s)]) << "slot " << s;
    EXPECT_EQ(g.row_token[static_cast<size_t>(r)], s / k) << "slot " << s;
    EXPECT_EQ(used[static_cast<size_t>(r)]++, 0) << "row " << r << " taken twice";
    const int32_t e = ids[static_cast<size_t>(s)];
    if (last_row.count(e) != 0) {
      EXPECT_GT(r, last_row[e]);
    }
    last_row[e] = r;
  }
  // Rows no slot took are padding: token -1, only in the chunks, fewer than a chunk per expert.
  std::map<int32_t, int64_t> padding;
  for (int64_t r = 0; r < g.rows; ++r) {
    if (used[static_cast<size_t>(r)] != 0) continue;
    EXPECT_EQ(g.row_token[static_cast<size_t>(r)], -1) << "row " << r;
    EXPECT_LT(r, g.chunk_rows) << "GEMM rows are never padded";
    ++padding[row_expert[static_cast<size_t>(r)]];
  }
  for (const auto& [e, n] : padding) EXPECT_LT(n, kChunkTokens) << "expert " << e;
  // The split: chunked iff fewer than gemm_min tokens; each chunked expert's chunks are consecutive.
  std::map<int32_t, int64_t> chunks;
  for (size_t c = 0; c < g.chunk_expert.size(); ++c) {
    const int32_t e = g.chunk_expert[c];
    if (c > 0 && g.chunk_expert[c - 1] != e) {
      EXPECT_EQ(chunks.count(e), 0u) << "expert " << e << "'s chunks are split";
    }
    ++chunks[e];
  }
  for (const auto& [e, n] : count) {
    if (n < gemm_min) {
      EXPECT_EQ(chunks[e], (n + kChunkTokens - 1) / kChunkTokens) << "expert " << e;
    } else {
      EXPECT_EQ(chunks.count(e), 0u) << "expert " << e << " has " << n << " tokens: a GEMM";
    }
  }
}

TEST(ExpertGroups, EverySlotGetsOneRowOfItsExpert) {
  std::mt19937 rng(7);
  ExpertGroups g;  // reused across cases, as the backend does
  for (const auto& [T, k, E, gemm_min] : std::vector<std::array<int64_t, 4>>{
           {37, 4, 16, 6}, {512, 8, 256, 64}, {9, 2, 4, 1000}, {64, 8, 8, 0}, {200, 2, 3, 50}, {12, 2, 8, 3}}) {
    SCOPED_TRACE(testing::Message() << "T=" << T << " k=" << k << " E=" << E << " gemm_min=" << gemm_min);
    std::vector<int32_t> ids(static_cast<size_t>(T * k));
    // Skewed choices: a few busy experts and a long tail, as real routers give.
    std::geometric_distribution<int32_t> pick(0.15);
    for (auto& e : ids) e = pick(rng) % static_cast<int32_t>(E);
    group_slots_by_expert(ids, k, E, gemm_min, g);
    expect_valid_layout(ids, k, E, gemm_min, g);
  }
}

TEST(ExpertGroups, ThresholdChoosesChunksOrGemms) {
  const std::vector<int32_t> ids = {0, 1, 0, 2, 0, 1, 0, 3, 0, 1};  // expert 0: 5 tokens, 1: 3, 2 and 3: 1
  ExpertGroups g;
  group_slots_by_expert(ids, 2, 4, 4, g);
  ASSERT_EQ(g.gemms.size(), 1u);
  EXPECT_EQ(g.gemms[0].expert, 0);
  EXPECT_EQ(g.gemms[0].first_row, 3 * kChunkTokens);
  EXPECT_EQ(g.chunk_expert, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(g.rows, 3 * kChunkTokens + 5);
  group_slots_by_expert(ids, 2, 4, 0, g);  // every expert a GEMM: the old per-expert path
  EXPECT_TRUE(g.chunk_expert.empty());
  EXPECT_EQ(g.gemms.size(), 4u);
  EXPECT_EQ(g.rows, 10);
  group_slots_by_expert(ids, 2, 4, 1 << 30, g);  // none
  EXPECT_TRUE(g.gemms.empty());
  EXPECT_EQ(g.chunk_rows, 4 * kChunkTokens);
}

TEST(ExpertGroups, BadChoicesAreNamed) {
  ExpertGroups g;
  const std::vector<int32_t> bad = {0, 1, 4, 2};
  try {
    group_slots_by_expert(bad, 2, 4, 64, g);
    FAIL() << "an expert id past the last was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token 1 chose expert 4 of 4"), std::string::npos) << e.what();
  }
  const std::vector<int32_t> negative = {0, -1};
  EXPECT_THROW(group_slots_by_expert(negative, 2, 4, 64, g), Error);
  const std::vector<int32_t> ragged = {0, 1, 2};
  EXPECT_THROW(group_slots_by_expert(ragged, 2, 4, 64, g), Error);
}

}  // namespace
}  // namespace tandem::cuda
