// Row-interleaved Q4_K and Q5_K groups (backend/cpu/interleaved.h), one typed suite:
// repacking round-trips byte for byte, the portable group dot equals the scalar row kernel
// on each of the 8 rows, and every SIMD group dot (AVX2, VNNI native where the CPU has
// it, VNNI emulated) equals the portable one (same integer
// sums; only the float summation order may differ), for 1..8 columns, padded activation
// rows and a wide output stride; extreme codes stay exact; Q5_K's fifth bits land right.
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

using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ8_K;

// What differs between the two types: the block, the kernels and the codes (Q5_K adds
// the fifth bit of element 32 * j + l at bit j of qh[l]).
struct Q4K {
  using Block = BlockQ4_K;
  static constexpr DType kType = DType::Q4_K;
  static constexpr int kMaxCode = 15;
  static constexpr RepackFn repack = repack_q4_k_x8;
  static constexpr UnpackFn unpack = unpack_q4_k_x8;
  static constexpr GroupDotFn scalar = dot_q4_k_x8_scalar;
  static int code(const Block& w, int j, int l) { return (w.qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0F; }
};
struct Q5K {
  using Block = BlockQ5_K;
  static constexpr DType kType = DType::Q5_K;
  static constexpr int kMaxCode = 31;
  static constexpr RepackFn repack = repack_q5_k_x8;
  static constexpr UnpackFn unpack = unpack_q5_k_x8;
  static constexpr GroupDotFn scalar = dot_q5_k_x8_scalar;
  static int code(const Block& w, int j, int l) {
    return ((w.qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0F) | ((w.qh[l] >> j) & 1) << 4;
  }
};

constexpr int64_t kOutStride = testing::kGroupOutStride;

template <class T>
size_t row_bytes(int64_t n) { return static_cast<size_t>(n / 256) * sizeof(typename T::Block); }
size_t act_stride(int64_t n) { return testing::q8_k_act_stride(n); }

// n_cols Q8_K activation rows of n normal values, act_stride(n) bytes apart.
std::vector<uint8_t> activations(int64_t n, int n_cols, std::mt19937& rng) {
  return testing::q8_k_activations(n, n_cols, rng);
}

// Per row r and column c: the sum over super-blocks of |d * da * scaled| + |dmin * da * mins|,
// the magnitudes whose float rounding the kernels may do in a different order.
template <class T>
std::vector<double> term_magnitudes(const std::vector<uint8_t>& rows, int64_t n, const std::vector<uint8_t>& act,
                                    int n_cols) {
  std::vector<double> mag(static_cast<size_t>(n_cols * kOutStride), 0.0);
  for (int c = 0; c < n_cols; ++c) {
    for (int r = 0; r < 8; ++r) {
      for (int64_t b = 0; b < n / 256; ++b) {
        typename T::Block w;
        BlockQ8_K a;
        std::memcpy(&w, rows.data() + r * row_bytes<T>(n) + b * sizeof(w), sizeof(w));
        std::memcpy(&a, act.data() + c * act_stride(n) + b * sizeof(a), sizeof(a));
        int64_t scaled = 0, mins = 0;
        for (int j = 0; j < 8; ++j) {
          int sc, mn;
          quant::unpack_scale_min_k4(w.scales, j, sc, mn);
          int64_t s = 0;
          for (int l = 0; l < 32; ++l) s += T::code(w, j, l) * a.qs[32 * j + l];
          scaled += sc * s;
          mins += mn * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
        }
        mag[c * kOutStride + r] += std::fabs(a.d * f16_to_f32(w.d) * static_cast<double>(scaled)) +
                                   std::fabs(a.d * f16_to_f32(w.dmin) * static_cast<double>(mins));
      }
    }
  }
  return mag;
}

// Runs a group dot into a buffer pre-filled with -1 (so stray writes show).
std::vector<float> run_dot(GroupDotFn dot, int64_t n, const std::vector<uint8_t>& group,
                           const std::vector<uint8_t>& act, int n_cols) {
  return testing::run_group_dot(dot, n, group, act, n_cols);
}

// The scalar row kernel on each of the 8 original rows.
template <class T>
std::vector<float> row_kernel_dot(const std::vector<uint8_t>& rows, int64_t n, const std::vector<uint8_t>& act,
                                  int n_cols) {
  const QuantDotKernel row_kernel = quant_dot_kernel(T::kType, Isa::scalar);
  std::vector<float> out(static_cast<size_t>(n_cols * kOutStride), -1.0f);
  for (int r = 0; r < 8; ++r) {
    row_kernel.dot(n, rows.data() + r * row_bytes<T>(n), act.data(), act_stride(n), n_cols, out.data() + r, kOutStride);
  }
  return out;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& expect, const std::vector<double>& mag,
                  int n_cols, const char* what) {
  testing::expect_group_close(got, expect, mag, n_cols, what);
}

template <class T>
class InterleavedK4 : public ::testing::Test {};
using K4Types = ::testing::Types<Q4K, Q5K>;
TYPED_TEST_SUITE(InterleavedK4, K4Types);

TYPED_TEST(InterleavedK4, RepackRoundTripsByteForByte) {
  using T = TypeParam;
  std::mt19937 rng(7);
  for (int64_t n : {256, 768, 2048}) {
    const auto rows = testing::random_blocks(T::kType, n / 256 * 8, rng);
    std::vector<uint8_t> group(rows.size()), back(rows.size());
    T::repack(rows.data(), row_bytes<T>(n), n, group.data());
    EXPECT_NE(group, rows);  // the layout really changed
    T::unpack(group.data(), n, back.data(), row_bytes<T>(n));
    EXPECT_EQ(back, rows) << "n=" << n;
  }
}

TYPED_TEST(InterleavedK4, RepackHonoursRowBytes) {
  using T = TypeParam;
  // Rows further apart than their data (a row stride of a larger matrix view).
  std::mt19937 rng(8);
  const int64_t n = 512;
  const size_t stride = row_bytes<T>(n) + sizeof(typename T::Block);
  auto rows = testing::random_blocks(T::kType, static_cast<int64_t>(stride / sizeof(typename T::Block)) * 8, rng);
  std::vector<uint8_t> group(8 * row_bytes<T>(n)), back(rows.size(), 0xCD);
  T::repack(rows.data(), stride, n, group.data());
  T::unpack(group.data(), n, back.data(), stride);
  for (int r = 0; r < 8; ++r) {
    EXPECT_TRUE(std::equal(rows.begin() + r * stride, rows.begin() + r * stride + row_bytes<T>(n), back.begin() + r * stride))
        << "row " << r;
    EXPECT_EQ(back[r * stride + row_bytes<T>(n)], 0xCD) << "wrote into the gap after row " << r;
  }
}

TYPED_TEST(InterleavedK4, ScalarGroupDotMatchesRowKernel) {
  using T = TypeParam;
  std::mt19937 rng(11);
  for (int64_t n : {256, 2048}) {
    const auto rows = testing::random_blocks(T::kType, n / 256 * 8, rng);
    std::vector<uint8_t> group(rows.size());
    T::repack(rows.data(), row_bytes<T>(n), n, group.data());
    for (int n_cols = 1; n_cols <= 8; ++n_cols) {
      const auto act = activations(n, n_cols, rng);
      expect_close(run_dot(T::scalar, n, group, act, n_cols), row_kernel_dot<T>(rows, n, act, n_cols),
                   term_magnitudes<T>(rows, n, act, n_cols), n_cols, "scalar");
    }
  }
}

TYPED_TEST(InterleavedK4, SimdGroupDotsMatchScalar) {
  using T = TypeParam;
  const auto paths = testing::group_dot_paths(T::kType, /*with_scalar=*/false);
  TANDEM_SKIP_WITHOUT_ISA(!paths.empty(), testing::isa_features(cpu::Isa::avx2), "no SIMD path on this CPU");
  std::mt19937 rng(13);
  for (int64_t n : {256, 768, 2048}) {
    const auto rows = testing::random_blocks(T::kType, n / 256 * 8, rng);
    std::vector<uint8_t> group(rows.size());
    T::repack(rows.data(), row_bytes<T>(n), n, group.data());
    for (int n_cols = 1; n_cols <= 8; ++n_cols) {
      const auto act = activations(n, n_cols, rng);
      const auto want = run_dot(T::scalar, n, group, act, n_cols);
      for (const auto& path : paths) {
        expect_close(run_dot(path.dot, n, group, act, n_cols), want, term_magnitudes<T>(rows, n, act, n_cols), n_cols,
                     path.name.c_str());
      }
    }
  }
}

TYPED_TEST(InterleavedK4, ExtremeCodesStayExactInIntegers) {
  // All codes at their maximum, scales and mins 63, activations all -128 or all 127: the
  // int16 sums reach the edge of what the AVX2 paths allow (Q4_K: a sub-block's 8 products,
  // 8 * 2 * 15 * 128 = 30720; Q5_K: half a sub-block's, 4 * 2 * 31 * 128 = 31744).
  using T = TypeParam;
  const int64_t n = 512;
  std::vector<uint8_t> rows(8 * row_bytes<T>(n));
  for (int64_t i = 0; i < 8 * n / 256; ++i) {
    typename T::Block w;
    if constexpr (requires { w.qh; }) std::memset(w.qh, 0xFF, sizeof(w.qh));
    w.d = f32_to_f16(1.0f / 64);
    w.dmin = f32_to_f16(1.0f / 1024);
    std::memset(w.scales, 0xFF, sizeof(w.scales));
    std::memset(w.qs, 0xFF, sizeof(w.qs));
    std::memcpy(rows.data() + i * sizeof(w), &w, sizeof(w));
  }
  std::vector<uint8_t> group(rows.size());
  T::repack(rows.data(), row_bytes<T>(n), n, group.data());
  const int n_cols = 2;
  std::vector<uint8_t> act(act_stride(n) * n_cols, 0);
  for (int c = 0; c < n_cols; ++c) {
    for (int64_t b = 0; b < n / 256; ++b) {
      BlockQ8_K a;
      a.d = 1.0f;
      const int8_t v = c == 0 ? -128 : 127;
      std::memset(a.qs, static_cast<uint8_t>(v), sizeof(a.qs));
      for (auto& s : a.bsums) s = static_cast<int16_t>(16 * v);
      std::memcpy(act.data() + c * act_stride(n) + b * sizeof(a), &a, sizeof(a));
    }
  }
  // Per super-block: d * 63 * 256 * max_code * v - dmin * 63 * 256 * v.
  const auto expect = [&](int v) {
    return 2 * 63.0f * 256 * static_cast<float>(v) * (static_cast<float>(T::kMaxCode) / 64 - 1.0f / 1024);
  };
  for (const auto& path : testing::group_dot_paths(T::kType)) {
    const auto got = run_dot(path.dot, n, group, act, n_cols);
    for (int r = 0; r < 8; ++r) {
      EXPECT_FLOAT_EQ(got[r], expect(-128)) << "r=" << r << " " << path.name;
      EXPECT_FLOAT_EQ(got[kOutStride + r], expect(127)) << "r=" << r << " " << path.name;
    }
  }
  // The scalar row kernel agrees.
  const QuantDotKernel row_kernel = quant_dot_kernel(T::kType, Isa::scalar);
  std::vector<float> out(static_cast<size_t>(n_cols * kOutStride), -1.0f);
  row_kernel.dot(n, rows.data(), act.data(), act_stride(n), n_cols, out.data(), kOutStride);
  EXPECT_FLOAT_EQ(out[0], expect(-128));
  EXPECT_FLOAT_EQ(out[kOutStride], expect(127));
}

TEST(InterleavedQ5K, FifthBitsReachTheirElements) {
  // One fifth bit set at a time (row r, element e), everything else zero and unit scales:
  // each kernel must put exactly 16 * a[e] into row r and nothing into the other rows.
  const int64_t n = 256;
  std::mt19937 rng(17);
  const auto act = activations(n, 1, rng);
  BlockQ8_K a;
  std::memcpy(&a, act.data(), sizeof(a));
  const auto paths = testing::group_dot_paths(DType::Q5_K);
  for (int r = 0; r < 8; r += 3) {
    for (int e = 0; e < 256; e += 7) {
      std::vector<uint8_t> rows(8 * row_bytes<Q5K>(n), 0);
      for (int i = 0; i < 8; ++i) {
        BlockQ5_K w{};
        w.d = f32_to_f16(1.0f);
        w.dmin = 0;
        for (int j = 0; j < 4; ++j) w.scales[j] = 1;  // scale 1, min 0 for sub-blocks 0..3
        for (int j = 8; j < 12; ++j) w.scales[j] = 1;  // and 4..7
        if (i == r) w.qh[e % 32] = static_cast<uint8_t>(1 << (e / 32));
        std::memcpy(rows.data() + i * sizeof(w), &w, sizeof(w));
      }
      std::vector<uint8_t> group(rows.size());
      repack_q5_k_x8(rows.data(), row_bytes<Q5K>(n), n, group.data());
      for (const auto& path : paths) {
        const auto got = run_dot(path.dot, n, group, act, 1);
        for (int i = 0; i < 8; ++i) {
          EXPECT_FLOAT_EQ(got[i], i == r ? a.d * 16.0f * a.qs[e] : 0.0f)
              << "r=" << r << " e=" << e << " row " << i << " " << path.name;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tandem::cpu
