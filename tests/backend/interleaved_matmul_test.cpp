// The CPU backend's interleaved weights end to end: CpuBackend::prepared repacks what it
// can (once), keeps the rest in place, and every matmul form — one matmul, a shared-input
// pass mixing both layouts and row counts that are not whole tiles, an expert of a 3-D
// stack — gives the row layout's results.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/group_width.h"
#include "backend/cpu/interleaved.h"
#include "core/error.h"
#include "support/random_blocks.h"

namespace tandem::cpu {
namespace {

struct Weight {
  std::vector<uint8_t> bytes;
  Tensor tensor;
};

Weight random_weight(DType type, int64_t n, int64_t rows, int64_t n_matrices, std::mt19937& rng) {
  Weight w;
  w.bytes = testing::random_blocks(type, n / dtype_info(type).block_elems * rows * n_matrices, rng);
  w.tensor.name = "w";
  w.tensor.type = type;
  w.tensor.ne = {n, rows, n_matrices, 1};
  w.tensor.n_dims = n_matrices > 1 ? 3 : 2;
  w.tensor.data = w.bytes.data();
  return w;
}

std::vector<float> random_input(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = dist(rng);
  return x;
}

// Same integer sums, float order differs: within 1e-5 of the outputs' scale (random
// weights cancel, so a single output can be far smaller than its terms).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  float scale = 1.0f;
  for (float v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5f * scale) << what << " at " << i;
}

const DType kTypes[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q5_0, DType::Q8_0, DType::IQ4_XS};

TEST(InterleavedMatmul, BackendRepacksOnceAndMatchesRowLayout) {
  OpContext ctx(2, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(3);
  size_t repacked = 0;
  std::vector<Weight> weights;  // alive as long as the context (it finds copies by address)
  weights.reserve(std::size(kTypes));
  for (DType type : kTypes) {
    const int64_t n = 512, rows = 40, T = 13;  // 40 rows: 8-row groups, not whole 16-row tiles
    const Weight& w = weights.emplace_back(random_weight(type, n, rows, 1, rng));
    const Tensor& p = be.prepared(w.tensor);
    ASSERT_TRUE(p.interleaved) << dtype_name(type);
    EXPECT_NE(p.data, w.tensor.data);
    EXPECT_EQ(&be.prepared(w.tensor), &p) << "repacked twice";
    CpuBackend other(ctx);  // another session's backend on the same context shares the copy
    EXPECT_EQ(&other.prepared(w.tensor), &p);
    repacked += w.bytes.size();
    EXPECT_EQ(ctx.interleaved_bytes(), repacked);
    const auto x = random_input(n * T, rng);
    std::vector<float> want(static_cast<size_t>(rows * T)), got(want.size());
    matmul(ctx, w.tensor, x.data(), T, want.data());
    matmul(ctx, p, x.data(), T, got.data());
    expect_close(got, want, dtype_name(type).data());
    // One token (decode) too.
    want.resize(rows);
    got.resize(rows);
    matmul(ctx, w.tensor, x.data(), 1, want.data());
    matmul(ctx, p, x.data(), 1, got.data());
    expect_close(got, want, "one token");
  }
}

// A prompt longer than one token chunk (matmul_token_chunk: activations in half the L2)
// goes over the row tiles once per chunk; chunks are whole 8-token blocks, so every token's
// outputs are bit-identical to a matmul of just its own block of 8, in both layouts.
TEST(InterleavedMatmul, TokenChunksGiveEachBlocksOwnBits) {
  OpContext ctx(2, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(11);
  std::vector<Weight> weights;  // alive as long as the context (it finds copies by address)
  weights.reserve(2);
  for (DType type : {DType::Q4_K, DType::Q6_K}) {
    const int64_t n = 8960, rows = 24;  // the 1.5B's ffn_down input: few tokens per chunk
    const Weight& w = weights.emplace_back(random_weight(type, n, rows, 1, rng));
    const QuantDotKernel& kernel = ctx.kernel(type);
    const int64_t chunk = matmul_token_chunk(activation_row_bytes(kernel, n));
    ASSERT_EQ(chunk % 8, 0);
    const int64_t T = 2 * chunk + 5;  // two whole chunks and a part of a block
    const auto x = random_input(n * T, rng);
    for (const Tensor* t : {&w.tensor, &be.prepared(w.tensor)}) {
      std::vector<float> whole(static_cast<size_t>(rows * T)), blocks(whole.size());
      matmul(ctx, *t, x.data(), T, whole.data());
      for (int64_t t0 = 0; t0 < T; t0 += 8) {
        matmul(ctx, *t, x.data() + t0 * n, std::min<int64_t>(8, T - t0), blocks.data() + t0 * rows);
      }
      EXPECT_EQ(0, std::memcmp(whole.data(), blocks.data(), whole.size() * sizeof(float)))
          << dtype_name(type) << (t->interleaved ? " interleaved" : " rows") << ", " << T << " tokens in chunks of "
          << chunk;
    }
  }
}

TEST(InterleavedMatmul, KeepsInPlaceWhatItCannotInterleave) {
  OpContext ctx(1, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(5);
  const Weight odd_rows = random_weight(DType::Q4_K, 256, 12, 1, rng);  // 12 rows: no whole groups
  EXPECT_EQ(&be.prepared(odd_rows.tensor), &odd_rows.tensor);
  const Weight no_kernel = random_weight(DType::Q3_K, 256, 16, 1, rng);  // no interleaved kernel
  EXPECT_EQ(&be.prepared(no_kernel.tensor), &no_kernel.tensor);
  ctx.set_float_activations(true);  // float path: rows only
  const Weight w = random_weight(DType::Q8_0, 256, 16, 1, rng);
  EXPECT_EQ(&be.prepared(w.tensor), &w.tensor);
  std::vector<float> x = random_input(256, rng), y(16);
  Tensor forced = w.tensor;
  forced.interleaved = true;
  EXPECT_THROW(matmul(ctx, forced, x.data(), 1, y.data()), Error);
  EXPECT_EQ(ctx.interleaved_bytes(), 0u);
}

TEST(InterleavedMatmul, AnotherWeightAtARepackedAddressIsAnError) {
  OpContext ctx(1, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(6);
  const Weight w = random_weight(DType::Q8_0, 256, 16, 1, rng);
  ASSERT_TRUE(be.prepared(w.tensor).interleaved);
  Tensor other = w.tensor;
  other.type = DType::Q5_0;
  EXPECT_THROW(be.prepared(other), Error);
}

TEST(InterleavedMatmul, SharedInputPassMixesLayoutsAndRowCounts) {
  OpContext ctx(2, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(9);
  const int64_t n = 256, T = 9;
  // Q5_0 and Q8_0 share Q8_0 activations: one grouped pass over 12 rows (row layout),
  // 24 interleaved rows and 40 interleaved rows.
  const Weight a = random_weight(DType::Q5_0, n, 12, 1, rng), b = random_weight(DType::Q8_0, n, 24, 1, rng),
               c = random_weight(DType::Q5_0, n, 40, 1, rng);
  const auto x = random_input(n * T, rng);
  std::vector<float> ya(12 * T), yb(24 * T), yc(40 * T);
  const SharedInputMatmul outs[] = {{&be.prepared(a.tensor), ya.data()}, {&be.prepared(b.tensor), yb.data()},
                                    {&be.prepared(c.tensor), yc.data()}};
  EXPECT_FALSE(outs[0].w->interleaved);
  EXPECT_TRUE(outs[1].w->interleaved && outs[2].w->interleaved);
  matmul_shared_input(ctx, x.data(), T, outs);
  for (const auto& [w, y] : {std::pair{&a, &ya}, std::pair{&b, &yb}, std::pair{&c, &yc}}) {
    std::vector<float> want(y->size());
    matmul(ctx, w->tensor, x.data(), T, want.data());
    expect_close(*y, want, "shared-input pass");
  }
}

TEST(InterleavedMatmul, ExpertOfARepackedStackMatchesItsRows) {
  OpContext ctx(1, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(13);
  const int64_t n = 512, rows = 16, experts = 4, T = 5;
  const Weight w = random_weight(DType::Q4_K, n, rows, experts, rng);
  const Tensor& p = be.prepared(w.tensor);
  ASSERT_TRUE(p.interleaved);
  const QuantDotKernel& k = ctx.kernel(DType::Q4_K);
  const auto x = random_input(n * T, rng);
  std::vector<uint8_t> act(activation_row_bytes(k, n) * T);
  quantize_activations(ctx, DType::Q4_K, x.data(), T, n, act.data());
  for (int64_t e = 0; e < experts; ++e) {
    std::vector<float> want(rows * T), got(rows * T);
    matmul_serial(k, {w.tensor.matrix(e), act.data(), T, want.data()});
    matmul_serial(k, {p.matrix(e), act.data(), T, got.data()});
    expect_close(got, want, "expert");
  }
}

// A 16-row pass that counts its calls: two calls of the path's 8-row pass.
GroupDotFn g_x8 = nullptr;
size_t g_group_bytes = 0;
int g_x16_calls = 0;
void counted_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t os) {
  ++g_x16_calls;
  g_x8(n, group, a, a_stride, n_cols, out, os);
  g_x8(n, group + g_group_bytes, a, a_stride, n_cols, out + kInterleave, os);
}

// A call of up to 8 tokens reads each weight byte once: it takes the streamed threshold; a
// longer one, whose tiles serve every block of 8 tokens from cache, the in-cache one.
TEST(InterleavedMatmul, WidthFollowsWhetherTheCallStreamsItsWeights) {
  OpContext ctx(1, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(19);
  const int64_t n = 512, rows = 64;
  const Weight w = random_weight(DType::Q8_0, n, rows, 1, rng);
  const Tensor& p = be.prepared(w.tensor);
  ASSERT_TRUE(p.interleaved);
  QuantDotKernel k = ctx.kernel(DType::Q8_0);
  g_x8 = k.dot_x8;
  g_group_bytes = w.tensor.row_bytes() * kInterleave;
  k.dot_x16 = counted_x16;
  struct Case {
    int cached, streamed;
    int64_t tokens;
    bool x16;
  };
  for (const Case& c : {Case{2, 0, 2, false}, Case{2, 0, 16, true}, Case{0, 2, 2, true}, Case{0, 2, 16, false},
                        Case{4, 3, 3, true}, Case{4, 3, 12, true}, Case{4, 4, 3, false}, Case{1, 1, 1, true}}) {
    k.x16_min_cols = c.cached;
    k.x16_min_cols_streamed = c.streamed;
    const auto x = random_input(n * c.tokens, rng);
    std::vector<uint8_t> act(activation_row_bytes(k, n) * static_cast<size_t>(c.tokens));
    quantize_activations(ctx, DType::Q8_0, x.data(), c.tokens, n, act.data());
    std::vector<float> want(static_cast<size_t>(rows * c.tokens)), got(want.size());
    matmul_serial(k, {w.tensor, act.data(), c.tokens, want.data()});
    g_x16_calls = 0;
    matmul_serial(k, {p, act.data(), c.tokens, got.data()});
    EXPECT_EQ(g_x16_calls > 0, c.x16) << "in cache from " << c.cached << ", streamed from " << c.streamed << ", "
                                      << c.tokens << " tokens";
    expect_close(got, want, "width choice");
  }
  // A forward pass of more than 8 tokens keeps its few-token calls (experts) on the in-cache
  // threshold; one of up to 8 lets them stream.
  k.x16_min_cols = 2;
  k.x16_min_cols_streamed = 5;
  EXPECT_EQ(kernel_for_pass(k, 8).x16_min_cols_streamed, 5);
  EXPECT_EQ(kernel_for_pass(k, 1).x16_min_cols_streamed, 5);
  EXPECT_EQ(kernel_for_pass(k, 9).x16_min_cols_streamed, 2);
  EXPECT_EQ(kernel_for_pass(k, 512).x16_min_cols, 2);
  EXPECT_EQ(kernel_for_pass(k, 512).dot_x16, k.dot_x16);
}

// The weights one context repacks decide which threshold its kernels keep for few-token
// calls: the in-cache one while they fit in the L3 (a call reads them from cache), the
// streamed measurement from the weight that outgrows it on, for every type seen.
TEST(InterleavedMatmul, ContextTakesStreamedWidthsOnceItsWeightsOutgrowTheL3) {
  const QuantDotKernel q4 = quant_dot_kernel(DType::Q4_K), q8 = quant_dot_kernel(DType::Q8_0);
  if (!q4.dot_x16 || !q8.dot_x16) GTEST_SKIP() << "this CPU's path has no 16-row pass: nothing to choose";
  OpContext ctx(1, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(23);
  const Weight small = random_weight(DType::Q4_K, 512, 16, 1, rng);
  ASSERT_TRUE(be.prepared(small.tensor).interleaved);
  EXPECT_EQ(ctx.kernel(DType::Q4_K).x16_min_cols, x16_min_cols(q4));
  EXPECT_EQ(ctx.kernel(DType::Q4_K).x16_min_cols_streamed, x16_min_cols(q4));
  // One Q8_0 weight larger than the L3.
  const int64_t n = 4096;
  const size_t row_bytes = static_cast<size_t>(n / 32 * 34);
  int64_t rows = 1024;
  while (!weights_stream(row_bytes * static_cast<size_t>(rows))) rows *= 2;
  const Weight big = random_weight(DType::Q8_0, n, rows, 1, rng);
  ASSERT_TRUE(be.prepared(big.tensor).interleaved);
  for (const QuantDotKernel* k : {&q4, &q8}) {
    SCOPED_TRACE(dtype_name(k->weight));
    const QuantDotKernel& settled = ctx.kernel(k->weight);
    const int cached = x16_min_cols(*k), streamed = x16_min_cols_streamed(*k);
    EXPECT_EQ(settled.x16_min_cols, cached);
    EXPECT_EQ(settled.x16_min_cols_streamed, streamed);
    EXPECT_EQ(settled.dot_x16 == nullptr, cached == 0 && streamed == 0);
  }
}

// What a GPU streams (Backend::read_weight_rows): the file's bytes of any rows, read from
// the weight itself before it is repacked and from the interleaved copy after.
// read_weight_rows: the file's rows, before and after repacking. read_stored_rows (what a
// GPU that undoes the interleaving itself streams): the stored bytes as they are and the
// unpack that restores the file's rows (null while there is nothing to undo).
TEST(InterleavedMatmul, ReadRowsGivesTheFileBytesBeforeAndAfterRepacking) {
  OpContext ctx(2, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(17);
  const int64_t n = 512, rows = 16, experts = 4;
  std::vector<Weight> weights;
  weights.reserve(std::size(kTypes));
  for (DType type : kTypes) {
    SCOPED_TRACE(::testing::Message() << dtype_name(type));
    weights.push_back(random_weight(type, n, rows, experts, rng));
    const Weight& w = weights.back();
    const size_t row_bytes = w.tensor.row_bytes();
    std::vector<uint8_t> got(w.bytes.size(), 0xA5);
    be.read_weight_rows(w.tensor, 3, 21, got.data());  // any rows while in the file's layout
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + 21 * row_bytes, w.bytes.begin() + 3 * row_bytes));
    std::fill(got.begin(), got.end(), 0xA5);
    EXPECT_EQ(be.stored_rows_layout(w.tensor), nullptr);
    EXPECT_EQ(be.read_stored_rows(w.tensor, 3, 21, got.data()), nullptr) << "the file's layout";
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + 21 * row_bytes, w.bytes.begin() + 3 * row_bytes));
    const Tensor& packed = be.prepared(w.tensor);
    ASSERT_TRUE(packed.interleaved);
    std::fill(got.begin(), got.end(), 0xA5);
    be.read_weight_rows(w.tensor, 0, rows * experts, got.data());
    EXPECT_EQ(got, w.bytes) << "every row, unpacked from the interleaved copy";
    std::fill(got.begin(), got.end(), 0xA5);
    be.read_weight_rows(w.tensor, 24, 16, got.data());  // expert 1's last group, expert 2's first
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + 16 * row_bytes, w.bytes.begin() + 24 * row_bytes));
    EXPECT_EQ(got[16 * row_bytes], 0xA5) << "wrote past the rows asked for";
    EXPECT_THROW(be.read_weight_rows(w.tensor, 4, 8, got.data()), Error);  // splits a group
    EXPECT_THROW(be.read_weight_rows(w.tensor, 56, 16, got.data()), Error);  // past the end

    StoredRowsUnpack* unpack = be.stored_rows_layout(w.tensor);
    ASSERT_NE(unpack, nullptr);
    std::fill(got.begin(), got.end(), 0xA5);
    EXPECT_EQ(be.read_stored_rows(w.tensor, 24, 16, got.data()), unpack);
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + 16 * row_bytes, packed.data + 24 * row_bytes))
        << "the interleaved copy's bytes of those rows, as they are";
    EXPECT_EQ(got[16 * row_bytes], 0xA5) << "wrote past the rows asked for";
    std::vector<uint8_t> file_rows(16 * row_bytes);
    for (int g = 0; g < 2; ++g) unpack(got.data() + g * 8 * row_bytes, n, file_rows.data() + g * 8 * row_bytes, row_bytes);
    EXPECT_TRUE(std::equal(file_rows.begin(), file_rows.end(), w.bytes.begin() + 24 * row_bytes)) << "unpacked: the file's rows";
    EXPECT_THROW(be.read_stored_rows(w.tensor, 4, 8, got.data()), Error);   // splits a group
    EXPECT_THROW(be.read_stored_rows(w.tensor, 56, 16, got.data()), Error);  // past the end
    EXPECT_THROW(be.read_stored_rows(packed, 0, 8, got.data()), Error);      // the copy itself
  }
}

// A draft model's pruned head (CpuBackend::logits_subset): only the subset's rows are read
// (views of the interleaved copy, of the file's rows, of f32 rows), each to the same bits as
// the full head's logits; the rest are -inf. The default (a GPU's) gives the same.
TEST(HeadSubset, EqualsTheFullHeadOnItsRowsBitForBitAndIsMinusInfElsewhere) {
  OpContext ctx(2, 4096);
  CpuBackend be(ctx);
  std::mt19937 rng(11);
  const int64_t D = 256, V = 200;  // 200: the last run ends at the vocabulary, not a whole 16
  const std::vector<RowRange> subset = {{0, 48}, {80, 96}, {128, 160}, {192, 200}};
  const std::vector<float> norm = random_input(D, rng);
  std::vector<Weight> weights;
  weights.reserve(4);
  for (DType type : {DType::Q8_0, DType::Q4_K, DType::Q4_1, DType::F32}) {  // interleaved, interleaved, rows, float
    Weight& w = weights.emplace_back(random_weight(type, D, V, 1, rng));
    if (type == DType::F32) {  // random bytes would be NaNs now and then
      const auto values = random_input(D * V, rng);
      std::memcpy(w.bytes.data(), values.data(), w.bytes.size());
    }
    for (int64_t T : {1, 3}) {
      const auto x = random_input(D * T, rng);
      std::vector<float> scratch(static_cast<size_t>(D * T)), full(static_cast<size_t>(V * T)), got(full.size()),
          fallback(full.size());
      be.logits(norm, 1e-6f, w.tensor, x.data(), T, D, scratch.data(), full.data());
      be.logits_subset(norm, 1e-6f, w.tensor, x.data(), T, D, scratch.data(), got.data(), subset);
      be.Backend::logits_subset(norm, 1e-6f, w.tensor, x.data(), T, D, scratch.data(), fallback.data(), subset);
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t r = 0; r < V; ++r) {
          const size_t i = static_cast<size_t>(t * V + r);
          const bool in = std::any_of(subset.begin(), subset.end(),
                                      [&](const RowRange& s) { return r >= s.begin && r < s.end; });
          if (in) {
            ASSERT_EQ(got[i], full[i]) << dtype_name(type) << " token " << t << " row " << r;
          } else {
            ASSERT_EQ(got[i], -INFINITY) << dtype_name(type) << " token " << t << " row " << r;
          }
          ASSERT_EQ(fallback[i], got[i]) << dtype_name(type) << " (default) token " << t << " row " << r;
        }
      }
    }
    EXPECT_EQ(be.prepared(w.tensor).interleaved, type == DType::Q8_0 || type == DType::Q4_K) << dtype_name(type);
  }
  // Runs must be sorted whole runs of kHeadSubsetRows within the head.
  const Weight& w = weights.front();
  const auto x = random_input(D, rng);
  std::vector<float> scratch(D), out(V);
  for (const std::vector<RowRange>& bad : std::vector<std::vector<RowRange>>{
           {{0, 40}}, {{8, 24}}, {{32, 48}, {0, 16}}, {{192, 208}}, {{16, 16}}}) {
    EXPECT_THROW(be.logits_subset(norm, 1e-6f, w.tensor, x.data(), 1, D, scratch.data(), out.data(), bad), Error);
  }
}

}  // namespace
}  // namespace tandem::cpu
