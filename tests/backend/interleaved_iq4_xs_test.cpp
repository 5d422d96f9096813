// Row-interleaved IQ4_XS groups (backend/cpu/interleaved.h): repacking round-trips byte
// for byte, the portable group dot equals the scalar row kernel on each of the 8 rows, and
// every SIMD group dot (AVX2, VNNI native where the CPU has it, VNNI emulated) equals the
// portable one (same integer sums; only the float summation order may differ), for 1..8 columns, padded activation rows and a wide output stride;
// extreme codebook values, scales and activations (-128 included, which sends the AVX2
// kernel down its exact path) stay exact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/interleaved.h"
#include "backend/cpu/quant_dot.h"
#include "core/half.h"
#include "interleaved_test_util.h"
#include "quant/blocks.h"
#include "support/random_blocks.h"

namespace tandem::cpu {
namespace {

using quant::BlockIQ4_XS;
using quant::BlockQ8_K;
using quant::kIQ4NLValues;

constexpr int64_t kOutStride = testing::kGroupOutStride;

size_t row_bytes(int64_t n) { return static_cast<size_t>(n / 256) * sizeof(BlockIQ4_XS); }
size_t act_stride(int64_t n) { return testing::q8_k_act_stride(n); }

int scale_of(const BlockIQ4_XS& w, int j) {
  return (((w.scales_l[j / 2] >> (4 * (j % 2))) & 0x0F) | ((w.scales_h >> (2 * j)) & 3) << 4) - 32;
}

std::vector<uint8_t> activations(int64_t n, int n_cols, std::mt19937& rng) {
  return testing::q8_k_activations(n, n_cols, rng);
}

// Per row and column: sum over super-blocks of |d * da * scaled|, the magnitude whose float
// rounding the kernels may do in a different order.
std::vector<double> term_magnitudes(const std::vector<uint8_t>& rows, int64_t n, const std::vector<uint8_t>& act,
                                    int n_cols) {
  std::vector<double> mag(static_cast<size_t>(n_cols * kOutStride), 0.0);
  for (int c = 0; c < n_cols; ++c) {
    for (int r = 0; r < 8; ++r) {
      for (int64_t b = 0; b < n / 256; ++b) {
        BlockIQ4_XS w;
        BlockQ8_K a;
        std::memcpy(&w, rows.data() + r * row_bytes(n) + b * sizeof(w), sizeof(w));
        std::memcpy(&a, act.data() + c * act_stride(n) + b * sizeof(a), sizeof(a));
        int64_t scaled = 0;
        for (int j = 0; j < 8; ++j) {
          int64_t s = 0;
          for (int l = 0; l < 16; ++l) {
            const uint8_t q = w.qs[16 * j + l];
            s += kIQ4NLValues[q & 0x0F] * a.qs[32 * j + l] + kIQ4NLValues[q >> 4] * a.qs[32 * j + 16 + l];
          }
          scaled += scale_of(w, j) * s;
        }
        mag[c * kOutStride + r] += std::fabs(a.d * f16_to_f32(w.d) * static_cast<double>(scaled));
      }
    }
  }
  return mag;
}

std::vector<float> run_dot(GroupDotFn dot, int64_t n, const std::vector<uint8_t>& group,
                           const std::vector<uint8_t>& act, int n_cols) {
  return testing::run_group_dot(dot, n, group, act, n_cols);
}

std::vector<float> row_kernel_dot(const std::vector<uint8_t>& rows, int64_t n, const std::vector<uint8_t>& act,
                                  int n_cols) {
  const QuantDotKernel row_kernel = quant_dot_kernel(DType::IQ4_XS, Isa::scalar);
  std::vector<float> out(static_cast<size_t>(n_cols * kOutStride), -1.0f);
  for (int r = 0; r < 8; ++r) {
    row_kernel.dot(n, rows.data() + r * row_bytes(n), act.data(), act_stride(n), n_cols, out.data() + r, kOutStride);
  }
  return out;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& expect, const std::vector<double>& mag,
                  int n_cols, const char* what) {
  testing::expect_group_close(got, expect, mag, n_cols, what);
}

TEST(InterleavedIQ4XS, RepackRoundTripsByteForByte) {
  std::mt19937 rng(7);
  for (int64_t n : {256, 768, 2048}) {
    const auto rows = testing::random_blocks(DType::IQ4_XS, n / 256 * 8, rng);
    std::vector<uint8_t> group(rows.size()), back(rows.size());
    repack_iq4_xs_x8(rows.data(), row_bytes(n), n, group.data());
    EXPECT_NE(group, rows);
    unpack_iq4_xs_x8(group.data(), n, back.data(), row_bytes(n));
    EXPECT_EQ(back, rows) << "n=" << n;
  }
}

TEST(InterleavedIQ4XS, RepackHonoursRowBytes) {
  std::mt19937 rng(8);
  const int64_t n = 512;
  const size_t stride = row_bytes(n) + sizeof(BlockIQ4_XS);
  auto rows = testing::random_blocks(DType::IQ4_XS, static_cast<int64_t>(stride / sizeof(BlockIQ4_XS)) * 8, rng);
  std::vector<uint8_t> group(8 * row_bytes(n)), back(rows.size(), 0xCD);
  repack_iq4_xs_x8(rows.data(), stride, n, group.data());
  unpack_iq4_xs_x8(group.data(), n, back.data(), stride);
  for (int r = 0; r < 8; ++r) {
    EXPECT_TRUE(std::equal(rows.begin() + r * stride, rows.begin() + r * stride + row_bytes(n), back.begin() + r * stride))
        << "row " << r;
    EXPECT_EQ(back[r * stride + row_bytes(n)], 0xCD) << "wrote into the gap after row " << r;
  }
}

TEST(InterleavedIQ4XS, ScalarGroupDotMatchesRowKernel) {
  std::mt19937 rng(11);
  for (int64_t n : {256, 2048}) {
    const auto rows = testing::random_blocks(DType::IQ4_XS, n / 256 * 8, rng);
    std::vector<uint8_t> group(rows.size());
    repack_iq4_xs_x8(rows.data(), row_bytes(n), n, group.data());
    for (int n_cols = 1; n_cols <= 8; ++n_cols) {
      const auto act = activations(n, n_cols, rng);
      expect_close(run_dot(dot_iq4_xs_x8_scalar, n, group, act, n_cols), row_kernel_dot(rows, n, act, n_cols),
                   term_magnitudes(rows, n, act, n_cols), n_cols, "scalar");
    }
  }
}

TEST(InterleavedIQ4XS, SimdGroupDotsMatchScalar) {
  const auto paths = testing::group_dot_paths(DType::IQ4_XS, /*with_scalar=*/false);
  TANDEM_SKIP_WITHOUT_ISA(!paths.empty(), testing::isa_features(cpu::Isa::avx2), "no SIMD path on this CPU");
  std::mt19937 rng(13);
  for (int64_t n : {256, 768, 2048}) {
    const auto rows = testing::random_blocks(DType::IQ4_XS, n / 256 * 8, rng);
    std::vector<uint8_t> group(rows.size());
    repack_iq4_xs_x8(rows.data(), row_bytes(n), n, group.data());
    for (int n_cols = 1; n_cols <= 8; ++n_cols) {
      const auto act = activations(n, n_cols, rng);
      const auto want = run_dot(dot_iq4_xs_x8_scalar, n, group, act, n_cols);
      for (const auto& path : paths) {
        expect_close(run_dot(path.dot, n, group, act, n_cols), want, term_magnitudes(rows, n, act, n_cols), n_cols,
                     path.name.c_str());
      }
    }
  }
}

TEST(InterleavedIQ4XS, ExtremeValuesStayExactInIntegers) {
  // Rows 0-3: all nibbles 0 (-127); rows 4-7: all nibbles 15 (113). Even rows: every
  // sub-block scale 63 (31); odd rows: scale 0 (-32). Columns of all -128, all 127 and all
  // -127. A product pair reaches 2 * 127 * 128 = 32512, the edge of maddubs' int16; with
  // -128 against negative weights the usual sign trick would be wrong.
  const int64_t n = 512;
  std::vector<uint8_t> rows(8 * row_bytes(n));
  for (int r = 0; r < 8; ++r) {
    for (int64_t b = 0; b < n / 256; ++b) {
      BlockIQ4_XS w;
      w.d = f32_to_f16(1.0f / 64);
      const bool top = r % 2 == 0;
      w.scales_h = top ? 0xFFFF : 0;
      std::memset(w.scales_l, top ? 0xFF : 0, sizeof(w.scales_l));
      std::memset(w.qs, r < 4 ? 0x00 : 0xFF, sizeof(w.qs));
      std::memcpy(rows.data() + r * row_bytes(n) + b * sizeof(w), &w, sizeof(w));
    }
  }
  std::vector<uint8_t> group(rows.size());
  repack_iq4_xs_x8(rows.data(), row_bytes(n), n, group.data());
  const int8_t values[] = {-128, 127, -127};
  const int n_cols = 3;
  std::vector<uint8_t> act(act_stride(n) * n_cols, 0);
  for (int c = 0; c < n_cols; ++c) {
    for (int64_t b = 0; b < n / 256; ++b) {
      BlockQ8_K a;
      a.d = 1.0f;
      std::memset(a.qs, static_cast<uint8_t>(values[c]), sizeof(a.qs));
      for (auto& s : a.bsums) s = static_cast<int16_t>(16 * values[c]);
      std::memcpy(act.data() + c * act_stride(n) + b * sizeof(a), &a, sizeof(a));
    }
  }
  // Per super-block: d * scale * 256 * w * v, two super-blocks.
  const auto expect = [&](int r, int v) {
    const double w = r < 4 ? -127 : 113, scale = r % 2 == 0 ? 31 : -32;
    return static_cast<float>(2 * (1.0 / 64) * scale * 256 * w * v);
  };
  const auto paths = testing::group_dot_paths(DType::IQ4_XS);
  for (const auto& path : paths) {
    const auto got = run_dot(path.dot, n, group, act, n_cols);
    for (int c = 0; c < n_cols; ++c) {
      for (int r = 0; r < 8; ++r) {
        EXPECT_FLOAT_EQ(got[c * kOutStride + r], expect(r, values[c])) << "c=" << c << " r=" << r << " " << path.name;
      }
    }
  }
  // One column per call: the columns without -128 take the AVX2 kernel's fast path.
  for (const auto& path : paths) {
    for (int c = 0; c < n_cols; ++c) {
      std::vector<float> out(static_cast<size_t>(kOutStride), -1.0f);
      path.dot(n, group.data(), act.data() + c * act_stride(n), act_stride(n), 1, out.data(), kOutStride);
      for (int r = 0; r < 8; ++r) EXPECT_FLOAT_EQ(out[r], expect(r, values[c])) << "alone: c=" << c << " r=" << r << " " << path.name;
      for (int64_t o = 8; o < kOutStride; ++o) EXPECT_EQ(out[o], -1.0f);
    }
  }
  // The scalar row kernel agrees.
  const auto rk = row_kernel_dot(rows, n, act, n_cols);
  for (int c = 0; c < n_cols; ++c) {
    for (int r = 0; r < 8; ++r) EXPECT_FLOAT_EQ(rk[c * kOutStride + r], expect(r, values[c])) << "c=" << c << " r=" << r;
  }
}

TEST(InterleavedIQ4XS, EachScaleReachesItsRowAndSubBlock) {
  // One (row, sub-block) at a time gets a distinct scale, the rest scale 32 (weight
  // scale 0): each kernel must put exactly that sub-block's dot into that row only.
  const int64_t n = 256;
  std::mt19937 rng(17);
  const auto act = activations(n, 1, rng);
  BlockQ8_K a;
  std::memcpy(&a, act.data(), sizeof(a));
  const auto base = testing::random_blocks(DType::IQ4_XS, 8, rng);
  const auto paths = testing::group_dot_paths(DType::IQ4_XS);
  for (int r = 0; r < 8; ++r) {
    for (int j = 0; j < 8; ++j) {
      const int ls = (5 * r + 7 * j + 1) % 64;
      std::vector<uint8_t> rows = base;
      for (int i = 0; i < 8; ++i) {
        BlockIQ4_XS w;
        std::memcpy(&w, rows.data() + i * sizeof(w), sizeof(w));
        w.d = f32_to_f16(1.0f);
        uint16_t h = 0;
        std::memset(w.scales_l, 0, sizeof(w.scales_l));
        for (int g = 0; g < 8; ++g) {
          const int s = i == r && g == j ? ls : 32;
          w.scales_l[g / 2] |= static_cast<uint8_t>((s & 0x0F) << (4 * (g % 2)));
          h |= static_cast<uint16_t>((s >> 4) << (2 * g));
        }
        w.scales_h = h;
        std::memcpy(rows.data() + i * sizeof(w), &w, sizeof(w));
      }
      BlockIQ4_XS w;
      std::memcpy(&w, rows.data() + r * sizeof(w), sizeof(w));
      int isum = 0;
      for (int l = 0; l < 16; ++l) {
        const uint8_t q = w.qs[16 * j + l];
        isum += kIQ4NLValues[q & 0x0F] * a.qs[32 * j + l] + kIQ4NLValues[q >> 4] * a.qs[32 * j + 16 + l];
      }
      const float expect = a.d * static_cast<float>((ls - 32) * isum);
      std::vector<uint8_t> group(rows.size());
      repack_iq4_xs_x8(rows.data(), row_bytes(n), n, group.data());
      for (const auto& path : paths) {
        const auto got = run_dot(path.dot, n, group, act, 1);
        for (int i = 0; i < 8; ++i) {
          EXPECT_FLOAT_EQ(got[i], i == r ? expect : 0.0f) << "r=" << r << " j=" << j << " row " << i << " " << path.name;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tandem::cpu
