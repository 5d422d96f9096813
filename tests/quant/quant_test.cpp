// Unit tests of the reference quantizers and dequantizers (no Python needed; the
// bit-exact comparison with gguf-py lives in quant_oracle_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace {

using tandem::DType;
using tandem::dtype_info;
using tandem::dtype_name;
namespace quant = tandem::quant;

const std::vector<DType> kBlockTypes = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                        DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                                        DType::Q8_K};

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x) {
  const auto& info = dtype_info(t);
  std::vector<uint8_t> out(x.size() / info.block_elems * info.block_bytes);
  EXPECT_EQ(quant::quantize_row(t, x.data(), out.data(), static_cast<int64_t>(x.size())), out.size());
  return out;
}

std::vector<float> dequantize(DType t, const std::vector<uint8_t>& q, size_t n) {
  std::vector<float> out(n);
  quant::dequantize_row(t, q.data(), out.data(), static_cast<int64_t>(n));
  return out;
}

// Gaussian (kind 0), Student-t with 3 dof (1), or shifted uniform (2) data; every block of
// 256 has its own scale in 1..100 so f16 block scales stay normal numbers.
std::vector<float> test_data(int kind, size_t n_blocks256, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> heavy(3.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(0.0f, 2.0f);
  std::vector<float> x(n_blocks256 * 256);
  for (size_t b = 0; b < n_blocks256; ++b) {
    const float scale = std::pow(10.0f, exponent(rng));
    for (size_t j = 0; j < 256; ++j) {
      const float v = kind == 0 ? normal(rng) : kind == 1 ? heavy(rng) : uniform(rng) + 0.5f;
      x[b * 256 + j] = v * scale;
    }
  }
  return x;
}

// ---- geometry and API contract ---------------------------------------------------------

template <typename Block>
void expect_geometry() {
  const auto& info = dtype_info(Block::kType);
  EXPECT_EQ(sizeof(Block), info.block_bytes) << info.name;
  EXPECT_EQ(static_cast<uint32_t>(Block::kElems), info.block_elems) << info.name;
}

TEST(QuantBlocks, SizesMatchDtypeTable) {
  expect_geometry<quant::BlockQ4_0>();
  expect_geometry<quant::BlockQ4_1>();
  expect_geometry<quant::BlockQ5_0>();
  expect_geometry<quant::BlockQ5_1>();
  expect_geometry<quant::BlockQ8_0>();
  expect_geometry<quant::BlockQ8_1>();
  expect_geometry<quant::BlockQ2_K>();
  expect_geometry<quant::BlockQ3_K>();
  expect_geometry<quant::BlockQ4_K>();
  expect_geometry<quant::BlockQ5_K>();
  expect_geometry<quant::BlockQ6_K>();
  expect_geometry<quant::BlockQ8_K>();
  expect_geometry<quant::BlockIQ4_NL>();
  expect_geometry<quant::BlockIQ4_XS>();
}

TEST(QuantApi, SupportedTypeLists) {
  const std::vector<DType> deq = {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1,
                                  DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                                  DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K, DType::IQ4_NL,
                                  DType::IQ4_XS};
  const std::vector<DType> q = {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};
  for (uint32_t id = 0; id < 64; ++id) {
    const auto info = dtype_info(id);
    if (!info) continue;
    const bool want_deq = std::find(deq.begin(), deq.end(), info->type) != deq.end();
    const bool want_q = std::find(q.begin(), q.end(), info->type) != q.end();
    EXPECT_EQ(quant::can_dequantize(info->type), want_deq) << info->name;
    EXPECT_EQ(quant::can_quantize(info->type), want_q) << info->name;
  }
}

// Runs f, expecting a tandem::Error whose message mentions every string in `needles`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "no tandem::Error thrown";
  } catch (const tandem::Error& e) {
    for (const std::string& s : needles) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
  }
}

TEST(QuantApi, BadElementCountThrows) {
  std::vector<uint8_t> bytes(4096);
  std::vector<float> floats(1024);
  expect_error([&] { quant::dequantize_row(DType::Q4_0, bytes.data(), floats.data(), 33); }, {"Q4_0", "33"});
  expect_error([&] { quant::dequantize_row(DType::Q6_K, bytes.data(), floats.data(), 128); }, {"Q6_K", "128"});
  expect_error([&] { quant::dequantize_row(DType::Q8_0, bytes.data(), floats.data(), -32); }, {"Q8_0", "-32"});
  expect_error([&] { quant::quantize_row(DType::Q5_1, floats.data(), bytes.data(), 48); }, {"Q5_1", "48"});
  expect_error([&] { quant::quantize_row(DType::Q4_K, floats.data(), bytes.data(), 512 + 32); }, {"Q4_K", "544"});
}

TEST(QuantApi, UnsupportedTypeThrows) {
  std::vector<uint8_t> bytes(4096);
  std::vector<float> floats(1024);
  expect_error([&] { quant::dequantize_row(DType::IQ2_XXS, bytes.data(), floats.data(), 256); }, {"IQ2_XXS"});
  expect_error([&] { quant::dequantize_row(DType::Q8_1, bytes.data(), floats.data(), 32); }, {"Q8_1"});
  expect_error([&] { quant::quantize_row(DType::Q2_K, floats.data(), bytes.data(), 256); }, {"Q2_K"});
  expect_error([&] { quant::quantize_row(DType::IQ4_NL, floats.data(), bytes.data(), 32); }, {"IQ4_NL"});
}

TEST(QuantApi, ZeroElementsIsANoOp) {
  uint8_t byte = 0xAB;
  float f = 1.5f;
  EXPECT_EQ(quant::quantize_row(DType::Q4_K, &f, &byte, 0), 0u);
  quant::dequantize_row(DType::Q4_K, &byte, &f, 0);
  EXPECT_EQ(byte, 0xAB);
  EXPECT_EQ(f, 1.5f);
}

// ---- hand-built blocks: the documented bit layouts ------------------------------------

TEST(QuantLayout, Q4_0NibbleOrder) {
  quant::BlockQ4_0 b{};
  b.d = tandem::f32_to_f16(0.5f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  std::vector<uint8_t> bytes(sizeof b);
  std::memcpy(bytes.data(), &b, sizeof b);
  const auto y = dequantize(DType::Q4_0, bytes, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * static_cast<float>(j - 8)) << j;
    EXPECT_EQ(y[j + 16], 0.5f * static_cast<float>(7 - j)) << j + 16;
  }
}

TEST(QuantLayout, Q5_0HighBitIsLittleEndianMask) {
  quant::BlockQ5_0 b{};
  b.d = tandem::f32_to_f16(1.0f);
  const uint32_t mask = 0x80000001u;  // elements 0 and 31 get the fifth bit
  std::memcpy(b.qh, &mask, 4);
  std::vector<uint8_t> bytes(sizeof b);
  std::memcpy(bytes.data(), &b, sizeof b);
  const auto y = dequantize(DType::Q5_0, bytes, 32);
  EXPECT_EQ(y[0], 0.0f);    // 16 - 16
  EXPECT_EQ(y[1], -16.0f);  // 0 - 16
  EXPECT_EQ(y[31], 0.0f);
}

TEST(QuantLayout, Q4_KSixBitScalesAndMins) {
  // Scales g+1 and mins 2g+1 for groups 0..7 (groups 4..7 need the packed high bits for
  // mins >= 16), all codes 1, d = dmin = 1: value = (g + 1) * 1 - (2g + 1) = -g.
  quant::BlockQ4_K b{};
  b.d = tandem::f32_to_f16(1.0f);
  b.dmin = tandem::f32_to_f16(1.0f);
  for (int g = 0; g < 8; ++g) {
    const int sc = g + 1 + (g >= 4 ? 32 : 0), mn = 2 * g + 1 + (g >= 4 ? 16 : 0);
    if (g < 4) {
      b.scales[g] = static_cast<uint8_t>(sc);
      b.scales[g + 4] = static_cast<uint8_t>(mn);
    } else {
      b.scales[g + 4] = static_cast<uint8_t>((sc & 0x0F) | ((mn & 0x0F) << 4));
      b.scales[g - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
      b.scales[g] |= static_cast<uint8_t>((mn >> 4) << 6);
    }
  }
  std::memset(b.qs, 0x11, sizeof b.qs);
  std::vector<uint8_t> bytes(sizeof b);
  std::memcpy(bytes.data(), &b, sizeof b);
  const auto y = dequantize(DType::Q4_K, bytes, 256);
  for (int g = 0; g < 8; ++g) {
    const float expected = g < 4 ? static_cast<float>(-g) : static_cast<float>((g + 33) - (2 * g + 17));
    for (int l = 0; l < 32; ++l) ASSERT_EQ(y[32 * g + l], expected) << "group " << g;
  }
}

TEST(QuantLayout, Q6_KElementPositions) {
  // One non-zero code per (half, slot) shows where element 128h + 32s + l lives.
  for (int e : {0, 37, 64, 100, 128, 161, 200, 255}) {
    quant::BlockQ6_K b{};
    b.d = tandem::f32_to_f16(1.0f);
    for (auto& s : b.scales) s = 1;
    const int h = e / 128, s = (e / 32) % 4, l = e % 32;
    // All codes 32 (value 0) ...
    for (int i = 0; i < 64; ++i) b.qh[i] = 0xAA;  // high bits 2 -> 32 for every element
    // ... except element e, code 32 + 5 = 37: low nibble 5.
    b.ql[64 * h + 32 * (s % 2) + l] |= static_cast<uint8_t>(5 << (4 * (s / 2)));
    std::vector<uint8_t> bytes(sizeof b);
    std::memcpy(bytes.data(), &b, sizeof b);
    const auto y = dequantize(DType::Q6_K, bytes, 256);
    for (int i = 0; i < 256; ++i) ASSERT_EQ(y[i], i == e ? 5.0f : 0.0f) << "marked " << e << " at " << i;
  }
}

// ---- quantizer properties --------------------------------------------------------------

TEST(QuantRoundTrip, ZerosStayZero) {
  const std::vector<float> zeros(512, 0.0f);
  for (DType t : kBlockTypes) {
    const auto back = dequantize(t, quantize(t, zeros), zeros.size());
    for (float v : back) ASSERT_EQ(v, 0.0f) << dtype_name(t);
  }
}

TEST(QuantRoundTrip, ConstantBlocksAreExactOrNearlySo) {
  for (float c : {1.0f, -2.5f, 0.1f}) {
    const std::vector<float> x(512, c);
    for (DType t : kBlockTypes) {
      const auto back = dequantize(t, quantize(t, x), x.size());
      // One f16 rounding of the scale (and one of the min) is all that may be lost.
      for (float v : back) ASSERT_NEAR(v, c, std::fabs(c) * 2e-3f) << dtype_name(t) << " c=" << c;
    }
  }
}

struct Bound {
  DType type;
  double max_err;   // max |error| / block absmax, any block
  double rmse;      // RMSE / block absmax, any block
};

// Bounds on error per block, relative to that block's absmax (blocks of the type's own
// size). Simple types: half a quantization step plus the f16 rounding of d (and m),
// where Q4_0/Q5_0 lose a full step at the clipped positive extreme:
//   Q8_0 1/254 + 2^-11, Q4_0 1/8 (+f16), Q5_0 1/16 (+f16), Q4_1 1/15, Q5_1 1/31 (+f16),
//   Q8_K 1/254 (f32 scale). RMSE bounds, and both bounds for the K-quants (no closed form),
//   are the worst cases measured over the three distributions below plus ~20% margin
//   (measured worst: RMSE Q8_0 .0029, Q4_0 .048, Q5_0 .0226, Q4_1 .0455, Q5_1 .0224,
//   Q8_K .0025; K-quants max/RMSE Q4_K .090/.030, Q5_K .043/.0147, Q6_K .0161/.0070).
const Bound kBounds[] = {
    {DType::Q8_0, 0.00445, 0.0035}, {DType::Q4_0, 0.1275, 0.058}, {DType::Q5_0, 0.0640, 0.028},
    {DType::Q4_1, 0.0690, 0.055},   {DType::Q5_1, 0.0340, 0.027}, {DType::Q8_K, 0.00395, 0.0030},
    {DType::Q4_K, 0.105, 0.036},    {DType::Q5_K, 0.052, 0.018},  {DType::Q6_K, 0.019, 0.0085},
};

TEST(QuantRoundTrip, ErrorWithinStatedBounds) {
  for (int kind = 0; kind < 3; ++kind) {
    const auto x = test_data(kind, 96, 100 + kind);
    for (const Bound& bound : kBounds) {
      const auto back = dequantize(bound.type, quantize(bound.type, x), x.size());
      const size_t be = dtype_info(bound.type).block_elems;
      double worst_max = 0, worst_rmse = 0;
      for (size_t b = 0; b < x.size() / be; ++b) {
        double amax = 0, se = 0, me = 0;
        for (size_t j = b * be; j < (b + 1) * be; ++j) {
          amax = std::max(amax, static_cast<double>(std::fabs(x[j])));
          const double e = static_cast<double>(back[j]) - x[j];
          se += e * e;
          me = std::max(me, std::fabs(e));
        }
        worst_max = std::max(worst_max, me / amax);
        worst_rmse = std::max(worst_rmse, std::sqrt(se / be) / amax);
      }
      EXPECT_LE(worst_max, bound.max_err) << dtype_name(bound.type) << " data kind " << kind;
      EXPECT_LE(worst_rmse, bound.rmse) << dtype_name(bound.type) << " data kind " << kind;
    }
  }
}

double mean_sq_error(DType t, const std::vector<float>& x) {
  const auto back = dequantize(t, quantize(t, x), x.size());
  double se = 0;
  for (size_t i = 0; i < x.size(); ++i) se += (static_cast<double>(back[i]) - x[i]) * (back[i] - x[i]);
  return se / static_cast<double>(x.size());
}

TEST(QuantRoundTrip, MoreBitsMeanLessError) {
  const auto x = test_data(0, 64, 7);
  // The K-quant searches must beat the plain formats of the same width, and each extra
  // bit must help.
  EXPECT_LT(mean_sq_error(DType::Q4_K, x), mean_sq_error(DType::Q4_0, x));
  EXPECT_LT(mean_sq_error(DType::Q5_K, x), mean_sq_error(DType::Q5_0, x));
  EXPECT_LT(mean_sq_error(DType::Q5_K, x), mean_sq_error(DType::Q4_K, x));
  EXPECT_LT(mean_sq_error(DType::Q6_K, x), mean_sq_error(DType::Q5_K, x));
  EXPECT_LT(mean_sq_error(DType::Q8_0, x), mean_sq_error(DType::Q6_K, x));
  EXPECT_LT(mean_sq_error(DType::Q5_1, x), mean_sq_error(DType::Q4_1, x));
}

TEST(QuantRoundTrip, RequantizingDecodedValuesIsStable) {
  const auto x = test_data(0, 32, 11);
  for (DType t : kBlockTypes) {
    const auto q1 = quantize(t, x);
    const auto y1 = dequantize(t, q1, x.size());
    const auto q2 = quantize(t, y1);
    const auto y2 = dequantize(t, q2, x.size());
    if (t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q5_0) {
      // The extreme value sits exactly on the grid, so the same scale and codes come back.
      // (Not so for Q8_K: +-127 codes tie in magnitude and its f32 scale is 1/iscale.)
      EXPECT_EQ(q1, q2) << dtype_name(t);
    }

    // For every type a second pass may move values by at most a fraction of a step.
    const size_t be = dtype_info(t).block_elems;
    for (size_t b = 0; b < x.size() / be; ++b) {
      float amax = 0;
      for (size_t j = b * be; j < (b + 1) * be; ++j) amax = std::max(amax, std::fabs(y1[j]));
      for (size_t j = b * be; j < (b + 1) * be; ++j) {
        ASSERT_NEAR(y2[j], y1[j], amax * 0.02f) << dtype_name(t) << " element " << j;
      }
    }
  }
}

TEST(QuantRoundTrip, Q8_KBlockSumsMatchCodes) {
  const auto x = test_data(1, 8, 3);
  const auto q = quantize(DType::Q8_K, x);
  for (size_t i = 0; i < q.size() / sizeof(quant::BlockQ8_K); ++i) {
    quant::BlockQ8_K b;
    std::memcpy(&b, q.data() + i * sizeof b, sizeof b);
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b.qs[16 * g + l];
      EXPECT_EQ(b.bsums[g], sum);
    }
    // The largest-magnitude element maps to -127 or 127.
    int most = 0;
    for (int8_t v : b.qs) most = std::max(most, std::abs(static_cast<int>(v)));
    EXPECT_EQ(most, 127);
  }
}

TEST(QuantRoundTrip, PlainTypesMatchHalfConversions) {
  std::mt19937 rng(5);
  std::vector<float> x(4096);
  for (float& v : x) v = tandem::bits_to_f32(rng() & 0xBFFFFFFFu);  // finite, any magnitude
  const auto f16 = quantize(DType::F16, x);
  const auto bf16 = quantize(DType::BF16, x);
  const auto f32 = quantize(DType::F32, x);
  const auto f16_back = dequantize(DType::F16, f16, x.size());
  const auto bf16_back = dequantize(DType::BF16, bf16, x.size());
  const auto f32_back = dequantize(DType::F32, f32, x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    uint16_t h, b;
    std::memcpy(&h, f16.data() + 2 * i, 2);
    std::memcpy(&b, bf16.data() + 2 * i, 2);
    ASSERT_EQ(h, tandem::f32_to_f16(x[i]));
    ASSERT_EQ(b, tandem::f32_to_bf16(x[i]));
    ASSERT_EQ(tandem::f32_to_bits(f16_back[i]), tandem::f32_to_bits(tandem::f16_to_f32(h)));
    ASSERT_EQ(tandem::f32_to_bits(bf16_back[i]), tandem::f32_to_bits(tandem::bf16_to_f32(b)));
    ASSERT_EQ(tandem::f32_to_bits(f32_back[i]), tandem::f32_to_bits(x[i]));
  }
}

TEST(QuantApi, UnalignedBuffersGiveTheSameResult) {
  const auto x = test_data(0, 4, 9);
  for (DType t : kBlockTypes) {
    const auto aligned = quantize(t, x);
    std::vector<uint8_t> shifted(aligned.size() + 1);
    ASSERT_EQ(quant::quantize_row(t, x.data(), shifted.data() + 1, static_cast<int64_t>(x.size())),
              aligned.size());
    EXPECT_EQ(0, std::memcmp(shifted.data() + 1, aligned.data(), aligned.size())) << dtype_name(t);
    std::vector<float> a(x.size()), u(x.size());
    quant::dequantize_row(t, aligned.data(), a.data(), static_cast<int64_t>(x.size()));
    quant::dequantize_row(t, shifted.data() + 1, u.data(), static_cast<int64_t>(x.size()));
    EXPECT_EQ(0, std::memcmp(a.data(), u.data(), a.size() * 4)) << dtype_name(t);
  }
}

}  // namespace
