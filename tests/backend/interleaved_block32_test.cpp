// Row-interleaved Q4_0, IQ4_NL, Q5_0 and Q8_0 groups (backend/cpu/interleaved.h) against the row kernels:
// repacking round-trips byte for byte, and a group's dot equals the scalar row kernel on
// each of its 8 rows (same integer sums; only the float summation order may differ) on the
// portable and the AVX2 path, for 1..8 columns and padded strides.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/interleaved.h"
#include "backend/cpu/quant_dot.h"
#include "interleaved_test_util.h"
#include "support/random_blocks.h"

namespace tandem::cpu {
namespace {

struct Block32Type {
  DType type;
  RepackFn repack;
  UnpackFn unpack;
};

const Block32Type kTypes[] = {
    {DType::Q4_0, repack_q4_0_x8, unpack_q4_0_x8},
    {DType::IQ4_NL, repack_q4_0_x8, unpack_q4_0_x8},
    {DType::Q5_0, repack_q5_0_x8, unpack_q5_0_x8},
    {DType::Q8_0, repack_q8_0_x8, unpack_q8_0_x8},
};

// Activation rows with a padded stride: n_cols rows of n quantized values.
std::vector<uint8_t> activations(const QuantDotKernel& k, int64_t n, int n_cols, size_t stride, std::mt19937& rng) {
  return testing::quantized_activations(k, n, n_cols, stride, rng);
}

TEST(InterleavedBlock32, RepackRoundTripsByteForByte) {
  std::mt19937 rng(7);
  for (const auto& t : kTypes) {
    for (int64_t n : {32, 96, 896}) {
      const size_t row_bytes = static_cast<size_t>(n / 32) * dtype_info(t.type).block_bytes;
      const auto rows = testing::random_blocks(t.type, n / 32 * 8, rng);
      std::vector<uint8_t> group(rows.size()), back(rows.size());
      t.repack(rows.data(), row_bytes, n, group.data());
      EXPECT_NE(group, rows) << dtype_name(t.type);  // the layout really changed
      t.unpack(group.data(), n, back.data(), row_bytes);
      EXPECT_EQ(back, rows) << dtype_name(t.type) << " n=" << n;
    }
  }
}

TEST(InterleavedBlock32, GroupDotMatchesRowKernelOnEveryPath) {
  std::mt19937 rng(11);
  for (const auto& t : kTypes) {
    const QuantDotKernel row_kernel = quant_dot_kernel(t.type, Isa::scalar);
    for (int64_t n : {32, 256, 896}) {
      const size_t row_bytes = static_cast<size_t>(n / 32) * dtype_info(t.type).block_bytes;
      const auto rows = testing::random_blocks(t.type, n / 32 * 8, rng);
      std::vector<uint8_t> group(rows.size());
      t.repack(rows.data(), row_bytes, n, group.data());
      for (int n_cols = 1; n_cols <= 8; ++n_cols) {
        const size_t stride = activation_row_bytes(row_kernel, n) + 40;  // padded rows
        const auto act = activations(row_kernel, n, n_cols, stride, rng);
        const int64_t os = 11;  // outputs of a column 11 floats apart
        std::vector<float> expect(static_cast<size_t>(n_cols * os), -1.0f);
        for (int r = 0; r < 8; ++r) row_kernel.dot(n, rows.data() + r * row_bytes, act.data(), stride, n_cols, expect.data() + r, os);
        for (const auto& path : testing::group_dot_paths(t.type)) {
          std::vector<float> got(expect.size(), -1.0f);
          path.dot(n, group.data(), act.data(), stride, n_cols, got.data(), os);
          for (int c = 0; c < n_cols; ++c) {
            for (int r = 0; r < 8; ++r) {
              const float e = expect[c * os + r], g = got[c * os + r];
              EXPECT_NEAR(g, e, 2e-5f * (1.0f + std::fabs(e)))
                  << dtype_name(t.type) << " n=" << n << " cols=" << n_cols << " c=" << c << " r=" << r
                  << " " << path.name;
            }
            for (int64_t o = 8; o < os; ++o) EXPECT_EQ(got[c * os + o], -1.0f) << "wrote outside its 8 rows";
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tandem::cpu
