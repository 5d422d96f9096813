// The matmul's choice between the 8-row and 16-row group passes (group_width.h): the rule
// over measured times, and the measurement itself on passes whose relative cost is known
// (built from a real 8-row pass doing its work more than once), so the measurement must
// find the faster width on any machine, busy or not.
#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/group_width.h"
#include "backend/cpu/interleaved.h"
#include "backend/cpu/quant_dot.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "interleaved_test_util.h"

namespace tandem::cpu {
namespace {

TEST(GroupWidth, RuleTakesTheSmallestCountFromWhichSixteenRowsKeepWinning) {
  // Faster at every count: from 1 column.
  EXPECT_EQ(x16_min_cols_from(std::vector<WidthTiming>{{1, 1.0, 0.9}, {2, 1.0, 0.9}, {4, 1.0, 0.8}, {8, 1.0, 0.7}}),
            1);
  // Slower at 1, even at 2: from 4.
  EXPECT_EQ(x16_min_cols_from(std::vector<WidthTiming>{{1, 1.0, 1.1}, {2, 1.0, 1.0}, {4, 1.0, 0.9}, {8, 1.0, 0.8}}),
            4);
  // A win at 2 that a loss at 4 interrupts does not count: from 8.
  EXPECT_EQ(x16_min_cols_from(std::vector<WidthTiming>{{1, 1.0, 1.2}, {2, 1.0, 0.9}, {4, 1.0, 1.05}, {8, 1.0, 0.9}}),
            8);
  // Slower at the widest count: never.
  EXPECT_EQ(x16_min_cols_from(std::vector<WidthTiming>{{1, 1.0, 0.9}, {2, 1.0, 0.9}, {4, 1.0, 0.9}, {8, 1.0, 1.1}}),
            0);
  // Inside the margin the 8-row pass stays; with no margin the 16-row one is taken.
  const std::vector<WidthTiming> close{{1, 1.0, 1.2}, {8, 1.0, 0.99}};
  EXPECT_EQ(x16_min_cols_from(close), 0);
  EXPECT_EQ(x16_min_cols_from(close, 0.0), 8);
  // The order of the timings does not matter.
  EXPECT_EQ(x16_min_cols_from(std::vector<WidthTiming>{{8, 1.0, 0.8}, {1, 1.0, 1.1}, {4, 1.0, 0.9}, {2, 1.0, 1.0}}),
            4);
  EXPECT_EQ(x16_min_cols_from(std::vector<WidthTiming>{}), 0);
}

// Passes of known relative cost, built from the real 8-row pass of one path.
GroupDotFn g_x8 = nullptr;
DType g_type = DType::Q8_0;

size_t group_bytes(int64_t n) {
  const DTypeInfo& info = dtype_info(g_type);
  return static_cast<size_t>(n / info.block_elems) * info.block_bytes * kInterleave;
}
// A 16-row pass that is two real 8-row calls.
void two_groups(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                int64_t os) {
  g_x8(n, group, a, a_stride, n_cols, out, os);
  g_x8(n, group + group_bytes(n), a, a_stride, n_cols, out + kInterleave, os);
}
// A 16-row pass that does its work twice: twice as slow as two 8-row calls.
void two_groups_twice(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t os) {
  two_groups(n, group, a, a_stride, n_cols, out, os);
  two_groups(n, group, a, a_stride, n_cols, out, os);
}
// An 8-row pass that does its work three times.
void one_group_thrice(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t os) {
  for (int i = 0; i < 3; ++i) g_x8(n, group, a, a_stride, n_cols, out, os);
}

void expect_complete(const std::vector<WidthTiming>& timings, std::span<const int> columns = kWidthColumns) {
  ASSERT_EQ(timings.size(), columns.size());
  for (size_t i = 0; i < timings.size(); ++i) {
    EXPECT_EQ(timings[i].cols, columns[i]);
    EXPECT_GT(timings[i].x8, 0.0);
    EXPECT_GT(timings[i].x16, 0.0);
    EXPECT_LT(timings[i].x8, 1.0);
  }
}

TEST(GroupWidth, MeasurementFindsTheFasterWidth) {
  for (DType type : {DType::Q8_0, DType::Q4_K}) {
    SCOPED_TRACE(dtype_name(type));
    QuantDotKernel k = quant_dot_kernel(type);
    ASSERT_TRUE(k.interleavable());
    g_type = type;
    g_x8 = k.dot_x8;
    // Sixteen rows at twice the cost of two 8-row calls: never used.
    k.dot_x16 = two_groups_twice;
    std::vector<WidthTiming> t = time_group_widths(k);
    expect_complete(t);
    EXPECT_EQ(x16_min_cols_from(t), 0);
    for (const WidthTiming& w : t) EXPECT_GT(w.x16, w.x8) << w.cols << " columns";
    // The 8-row pass three times as slow as its share of the 16-row one: used from the
    // fewest columns measured, 2 (one column, decode, stays on the 8-row pass).
    k.dot_x8 = one_group_thrice;
    k.dot_x16 = two_groups;
    t = time_group_widths(k);
    expect_complete(t);
    EXPECT_EQ(x16_min_cols_from(t), 2);
  }
}

// The streamed measurement reads its buffer once per pass (a small one here, for the
// test's time) and covers one column too: with the 8-row pass three times too slow, the
// 16-row pass wins from one column; at twice the work, never.
TEST(GroupWidth, StreamedMeasurementFindsTheFasterWidth) {
  QuantDotKernel k = quant_dot_kernel(DType::Q8_0);
  ASSERT_TRUE(k.interleavable());
  g_type = DType::Q8_0;
  g_x8 = k.dot_x8;
  constexpr size_t kBytes = size_t{4} << 20;
  k.dot_x16 = two_groups_twice;
  std::vector<WidthTiming> t = time_streamed_group_widths(k, kBytes);
  expect_complete(t, kStreamedWidthColumns);
  EXPECT_EQ(x16_min_cols_from(t), 0);
  k.dot_x8 = one_group_thrice;
  k.dot_x16 = two_groups;
  t = time_streamed_group_widths(k, kBytes);
  expect_complete(t, kStreamedWidthColumns);
  EXPECT_EQ(x16_min_cols_from(t), 1);
  // The same with two threads streaming at once (each pass split between them).
  ThreadPool pool(2);
  t = time_streamed_group_widths(k, kBytes, &pool);
  expect_complete(t, kStreamedWidthColumns);
  EXPECT_EQ(x16_min_cols_from(t), 1);
  k.dot_x16 = two_groups_twice;
  k.dot_x8 = g_x8;
  t = time_streamed_group_widths(k, kBytes, &pool);
  expect_complete(t, kStreamedWidthColumns);
  EXPECT_EQ(x16_min_cols_from(t), 0);
  EXPECT_GE(streamed_probe_bytes(), size_t{32} << 20);
  EXPECT_LE(streamed_probe_bytes(), size_t{256} << 20);
  EXPECT_FALSE(weights_stream(size_t{1} << 20));  // every L3 holds 1 MiB
  EXPECT_TRUE(weights_stream(size_t{1} << 40));
}

TEST(GroupWidth, RealSixteenRowPassesAreMeasured) {
  // The emulated 512-bit passes run anywhere; the native ones where the CPU has AVX512-VNNI.
  // Which width wins is the CPU's business; the measurement must cover every count and the
  // decision must be one of them, the same on every call.
  std::vector<QuantDotKernel> kernels;
  for (DType type : {DType::Q4_K, DType::Q6_K}) {
    QuantDotKernel k = quant_dot_kernel(type);
    k.dot_x8 = type == DType::Q4_K ? vnni_emulated::dot_q4_k_x8 : vnni_emulated::dot_q6_k_x8;
    k.dot_x16 = type == DType::Q4_K ? vnni_emulated::dot_q4_k_x16 : vnni_emulated::dot_q6_k_x16;
    kernels.push_back(k);
  }
  if (cpu_runs(Isa::avx512_vnni)) {
    for (DType type : {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS, DType::Q5_0, DType::Q8_0}) {
      kernels.push_back(quant_dot_kernel(type, Isa::avx512_vnni));
    }
  }
  for (const QuantDotKernel& k : kernels) {
    SCOPED_TRACE(dtype_name(k.weight));
    ASSERT_NE(k.dot_x16, nullptr);
    expect_complete(time_group_widths(k));
    const int from = x16_min_cols(k);
    EXPECT_TRUE(from == 0 || std::find(std::begin(kWidthColumns), std::end(kWidthColumns), from) != std::end(kWidthColumns))
        << from;
    EXPECT_EQ(x16_min_cols(k), from);
  }
  // Streamed, for one real kernel (the full probe: twice the L3).
  const QuantDotKernel& k = kernels.back();
  expect_complete(time_streamed_group_widths(k, size_t{8} << 20), kStreamedWidthColumns);
  const int from = x16_min_cols_streamed(k);
  EXPECT_TRUE(from == 0 || std::find(std::begin(kStreamedWidthColumns), std::end(kStreamedWidthColumns), from) !=
                               std::end(kStreamedWidthColumns))
      << from;
  EXPECT_EQ(x16_min_cols_streamed(k), from);
}

TEST(GroupWidth, PathsWithoutSixteenRowsAndTheOverride) {
  QuantDotKernel k = quant_dot_kernel(DType::Q8_0, Isa::avx2);
  if (!cpu_runs(Isa::avx2)) k = quant_dot_kernel(DType::Q8_0, Isa::scalar);
  k.dot_x16 = nullptr;
  EXPECT_EQ(x16_min_cols(k), 0);
  EXPECT_EQ(x16_min_cols_streamed(k), 0);
  EXPECT_THROW(time_group_widths(k), std::runtime_error);
  EXPECT_THROW(time_streamed_group_widths(k, size_t{1} << 20), std::runtime_error);
  EXPECT_EQ(parse_x16_override(nullptr), -1);
  EXPECT_EQ(parse_x16_override("auto"), -1);
  EXPECT_EQ(parse_x16_override("on"), 1);
  EXPECT_EQ(parse_x16_override("off"), 0);
  try {
    parse_x16_override("yes");
    FAIL() << "no error for TANDEM_X16=yes";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("TANDEM_X16='yes'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem::cpu
