// Interleaved Q6_K (backend/cpu/interleaved_q6_k*.cpp): the repack is lossless, the portable
// group dot matches the scalar row kernel on each of the 8 original rows, and the AVX2 group
// dot matches the portable one. Weight blocks are random bytes with sane f16 scales, so every
// code and (signed) group scale occurs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/interleaved.h"
#include "backend/cpu/quant_dot.h"
#include "core/dtype.h"
#include "core/half.h"
#include "interleaved_test_util.h"
#include "quant/blocks.h"
#include "support/random_blocks.h"

namespace tandem::cpu {
namespace {

constexpr size_t kBlockBytes = sizeof(quant::BlockQ6_K);
constexpr size_t kActBlockBytes = sizeof(quant::BlockQ8_K);

// 8 rows of n elements, row-major as in the file.
std::vector<uint8_t> random_rows(int64_t n, std::mt19937& rng) {
  return testing::random_blocks(DType::Q6_K, n / quant::kQK * kInterleave, rng);
}

std::vector<uint8_t> repacked(const std::vector<uint8_t>& rows, int64_t n) {
  std::vector<uint8_t> group(rows.size());
  repack_q6_k_x8(rows.data(), n / quant::kQK * kBlockBytes, n, group.data());
  return group;
}

// n_cols Q8_K activation rows, each a_stride bytes apart (a_stride >= a row), of varied magnitude.
std::vector<uint8_t> random_activations(int64_t n, int n_cols, size_t a_stride, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<uint8_t> act(a_stride * n_cols, 0xA5);
  std::vector<float> x(static_cast<size_t>(n));
  for (int c = 0; c < n_cols; ++c) {
    for (float& v : x) v = normal(rng) * static_cast<float>(c + 1);
    quantize_q8_k(x.data(), act.data() + c * a_stride, n);
  }
  return act;
}

// sum_i |w_i a_i| of one weight row and one activation row: the scale of rounding error.
double magnitude(const uint8_t* row, const uint8_t* act, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n / quant::kQK; ++i) {
    quant::BlockQ6_K w;
    quant::BlockQ8_K x;
    std::memcpy(&w, row + i * kBlockBytes, sizeof(w));
    std::memcpy(&x, act + i * kActBlockBytes, sizeof(x));
    const double d = std::fabs(f16_to_f32(w.d) * x.d);
    for (int e = 0; e < quant::kQK; ++e) {
      const int h = e / 128, s = (e / 32) % 4, l = e % 32;
      const int q = (((w.ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0F) | (((w.qh[32 * h + l] >> (2 * s)) & 3) << 4)) - 32;
      sum += d * std::abs(w.scales[e / 16] * q * x.qs[e]);
    }
  }
  return sum;
}

TEST(InterleavedQ6K, RepackRoundTripsByteForByte) {
  std::mt19937 rng(61);
  for (int64_t n : {256, 768, 2048}) {
    const std::vector<uint8_t> rows = random_rows(n, rng);
    const std::vector<uint8_t> group = repacked(rows, n);
    EXPECT_NE(group, rows) << "n " << n << ": the layout should differ from the file's";
    std::vector<uint8_t> back(rows.size(), 0);
    unpack_q6_k_x8(group.data(), n, back.data(), n / quant::kQK * kBlockBytes);
    EXPECT_EQ(back, rows) << "n " << n;
  }
}

TEST(InterleavedQ6K, RepackHonoursRowStride) {
  // Rows of a wider matrix: row_bytes larger than the n elements repacked.
  std::mt19937 rng(62);
  const int64_t n = 512, row_bytes = 3 * kBlockBytes;
  const std::vector<uint8_t> wide = testing::random_blocks(DType::Q6_K, 3 * kInterleave, rng);
  std::vector<uint8_t> group(kInterleave * n / quant::kQK * kBlockBytes);
  repack_q6_k_x8(wide.data(), row_bytes, n, group.data());
  std::vector<uint8_t> back(wide.size(), 0);
  unpack_q6_k_x8(group.data(), n, back.data(), row_bytes);
  for (int r = 0; r < kInterleave; ++r) {
    for (size_t b = 0; b < n / quant::kQK * kBlockBytes; ++b) {
      ASSERT_EQ(back[r * row_bytes + b], wide[r * row_bytes + b]) << "row " << r << " byte " << b;
    }
  }
}

TEST(InterleavedQ6K, ScalarGroupDotMatchesRowKernel) {
  std::mt19937 rng(63);
  const QuantDotKernel row_kernel = quant_dot_kernel(DType::Q6_K, Isa::scalar);
  for (int64_t n : {256, 768, 2048}) {
    const size_t row_bytes = n / quant::kQK * kBlockBytes, act_row = n / quant::kQK * kActBlockBytes;
    const std::vector<uint8_t> rows = random_rows(n, rng);
    const std::vector<uint8_t> group = repacked(rows, n);
    for (int n_cols = 1; n_cols <= 8; ++n_cols) {
      const std::vector<uint8_t> act = random_activations(n, n_cols, act_row, rng);
      std::vector<float> out(8 * n_cols, NAN);
      dot_q6_k_x8_scalar(n, group.data(), act.data(), act_row, n_cols, out.data(), 8);
      for (int r = 0; r < kInterleave; ++r) {
        std::vector<float> want(n_cols);
        row_kernel.dot(n, rows.data() + r * row_bytes, act.data(), act_row, n_cols, want.data(), 1);
        for (int c = 0; c < n_cols; ++c) {
          const double tol = 1e-6 * magnitude(rows.data() + r * row_bytes, act.data() + c * act_row, n);
          EXPECT_NEAR(out[c * 8 + r], want[c], tol) << "n " << n << " row " << r << " column " << c << " of " << n_cols;
        }
      }
    }
  }
}

TEST(InterleavedQ6K, SimdGroupDotsMatchScalar) {
  const auto paths = testing::group_dot_paths(DType::Q6_K, /*with_scalar=*/false);
  TANDEM_SKIP_WITHOUT_ISA(!paths.empty(), testing::isa_features(cpu::Isa::avx2), "no SIMD path on this CPU");
  std::mt19937 rng(64);
  for (int64_t n : {256, 768, 2048}) {
    const size_t row_bytes = n / quant::kQK * kBlockBytes, act_row = n / quant::kQK * kActBlockBytes;
    const std::vector<uint8_t> rows = random_rows(n, rng);
    const std::vector<uint8_t> group = repacked(rows, n);
    for (int n_cols = 1; n_cols <= 8; ++n_cols) {
      const std::vector<uint8_t> act = random_activations(n, n_cols, act_row, rng);
      std::vector<float> want(8 * n_cols);
      dot_q6_k_x8_scalar(n, group.data(), act.data(), act_row, n_cols, want.data(), 8);
      for (const auto& path : paths) {
        std::vector<float> got(8 * n_cols, NAN);
        path.dot(n, group.data(), act.data(), act_row, n_cols, got.data(), 8);
        for (int c = 0; c < n_cols; ++c) {
          for (int r = 0; r < kInterleave; ++r) {
            const double tol = 1e-6 * magnitude(rows.data() + r * row_bytes, act.data() + c * act_row, n);
            EXPECT_NEAR(got[c * 8 + r], want[c * 8 + r], tol)
                << path.name << " n " << n << " row " << r << " column " << c << " of " << n_cols;
          }
        }
      }
    }
  }
}

TEST(InterleavedQ6K, ExtremeCodesAndActivationsStayExact) {
  // The largest int16 partial sums the AVX2 kernel forms: codes all 63 (or all 0), scales
  // -128 and 127, activations all +-127 (constant inputs quantize to full scale).
  const auto paths = testing::group_dot_paths(DType::Q6_K, /*with_scalar=*/false);
  TANDEM_SKIP_WITHOUT_ISA(!paths.empty(), testing::isa_features(cpu::Isa::avx2), "no SIMD path on this CPU");
  const int64_t n = 512;
  const size_t row_bytes = n / quant::kQK * kBlockBytes, act_row = n / quant::kQK * kActBlockBytes;
  std::vector<uint8_t> rows(kInterleave * row_bytes);
  for (int r = 0; r < kInterleave; ++r) {
    for (int64_t b = 0; b < n / quant::kQK; ++b) {
      quant::BlockQ6_K blk;
      std::memset(blk.ql, r % 2 == 0 ? 0xFF : 0x00, sizeof(blk.ql));
      std::memset(blk.qh, r % 2 == 0 ? 0xFF : 0x00, sizeof(blk.qh));
      for (int g = 0; g < 16; ++g) blk.scales[g] = static_cast<int8_t>((g + r) % 2 == 0 ? -128 : 127);
      blk.d = f32_to_f16(0.01f);
      std::memcpy(rows.data() + r * row_bytes + b * kBlockBytes, &blk, sizeof(blk));
    }
  }
  const std::vector<uint8_t> group = repacked(rows, n);
  const int n_cols = 3;
  std::vector<uint8_t> act(act_row * n_cols);
  std::vector<float> x(n);
  for (int c = 0; c < n_cols; ++c) {
    for (int64_t i = 0; i < n; ++i) x[i] = c == 0 ? 1.0f : c == 1 ? -1.0f : (i % 2 == 0 ? 1.0f : -1.0f);
    quantize_q8_k(x.data(), act.data() + c * act_row, n);
  }
  std::vector<float> want(8 * n_cols);
  dot_q6_k_x8_scalar(n, group.data(), act.data(), act_row, n_cols, want.data(), 8);
  for (const auto& path : paths) {
    std::vector<float> got(8 * n_cols);
    path.dot(n, group.data(), act.data(), act_row, n_cols, got.data(), 8);
    for (int c = 0; c < n_cols; ++c) {
      for (int r = 0; r < kInterleave; ++r) {
        const double tol = 1e-6 * magnitude(rows.data() + r * row_bytes, act.data() + c * act_row, n);
        EXPECT_NEAR(got[c * 8 + r], want[c * 8 + r], tol) << path.name << " row " << r << " column " << c;
      }
    }
  }
}

TEST(InterleavedQ6K, GroupDotsHonourStridesAndOverwrite) {
  // Padded activation rows and an output stride wider than 8: only out[c * stride + r] for r < 8
  // is written, with the value (not added to what was there).
  std::mt19937 rng(65);
  const int64_t n = 768, out_stride = 13;
  const size_t act_row = n / quant::kQK * kActBlockBytes, a_stride = act_row + 100;
  const std::vector<uint8_t> rows = random_rows(n, rng);
  const std::vector<uint8_t> group = repacked(rows, n);
  std::vector<GroupDotFn> dots;
  for (const auto& path : testing::group_dot_paths(DType::Q6_K)) dots.push_back(path.dot);
  for (int n_cols = 1; n_cols <= 8; ++n_cols) {
    const std::vector<uint8_t> padded = random_activations(n, n_cols, a_stride, rng);
    std::vector<uint8_t> packed(act_row * n_cols);
    for (int c = 0; c < n_cols; ++c) std::memcpy(packed.data() + c * act_row, padded.data() + c * a_stride, act_row);
    std::vector<float> want(8 * n_cols);
    dot_q6_k_x8_scalar(n, group.data(), packed.data(), act_row, n_cols, want.data(), 8);
    for (GroupDotFn dot : dots) {
      std::vector<float> out(out_stride * n_cols, 1e30f);
      dot(n, group.data(), padded.data(), a_stride, n_cols, out.data(), out_stride);
      for (int c = 0; c < n_cols; ++c) {
        for (int r = 0; r < out_stride; ++r) {
          const float got = out[c * out_stride + r];
          if (r >= kInterleave) {
            EXPECT_EQ(got, 1e30f) << "column " << c << " slot " << r << " of " << n_cols << " was written";
          } else {
            const double tol = 1e-6 * magnitude(rows.data() + r * (n / quant::kQK * kBlockBytes), packed.data() + c * act_row, n);
            EXPECT_NEAR(got, want[c * 8 + r], tol) << "row " << r << " column " << c << " of " << n_cols;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tandem::cpu
