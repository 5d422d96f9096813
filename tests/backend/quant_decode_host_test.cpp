// The CUDA backend's block decoders (backend/cuda/quant_decode.h) run here on the CPU:
// they are __host__ __device__, and the kernels use exactly these functions, so this is
// the part of the GPU path a machine without a GPU can prove. Every decoder must equal
// the reference dequantizer bit for bit on random blocks (random bytes, so every code and
// scale bit pattern occurs, with finite f16 scale fields of any magnitude and sign), and
// the integer sub-block dot product must equal a double-precision dot of the decoded values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/quant_decode.h"
#include "core/half.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "support/random_blocks.h"

namespace tandem::cuda {
namespace {

// Random f16 bits that are finite: zeros, subnormals, normals up to 65504, either sign.
uint16_t random_finite_half(std::mt19937& rng) {
  uint16_t h = static_cast<uint16_t>(rng());
  if (((h >> 10) & 0x1F) == 0x1F) h &= ~(1u << 14);
  return h;
}

std::vector<uint8_t> random_blocks(DType t, int n_blocks, std::mt19937& rng, bool small_scales) {
  if (small_scales) return testing::random_blocks(t, n_blocks, rng);
  return testing::random_blocks(t, n_blocks, rng, [&] { return random_finite_half(rng); });
}

template <DType T>
void expect_blocks_bit_identical(std::mt19937& rng) {
  constexpr int kBlocks = 4000;
  const DTypeInfo& info = dtype_info(T);
  ASSERT_EQ(QuantType<T>::kElems, static_cast<int>(info.block_elems));
  ASSERT_EQ(sizeof(typename QuantType<T>::Block), info.block_bytes);
  ASSERT_EQ(QuantType<T>::kElems, 32 * QuantType<T>::kSubs);
  for (bool small : {false, true}) {
    const std::vector<uint8_t> bytes = random_blocks(T, kBlocks, rng, small);
    std::vector<float> want(static_cast<size_t>(kBlocks) * info.block_elems), got(want.size());
    quant::dequantize_row(T, bytes.data(), want.data(), static_cast<int64_t>(want.size()));
    for (int b = 0; b < kBlocks; ++b) {
      decode_block<T>(bytes.data() + static_cast<size_t>(b) * info.block_bytes, got.data() + static_cast<size_t>(b) * info.block_elems);
    }
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(f32_to_bits(got[i]), f32_to_bits(want[i]))
          << dtype_name(T) << " block " << i / info.block_elems << " element " << i % info.block_elems << ": got "
          << got[i] << ", reference " << want[i];
    }
  }
}

TEST(QuantDecodeHost, BlocksAreBitIdenticalToTheReference) {
  std::mt19937 rng(1);
  expect_blocks_bit_identical<DType::Q4_0>(rng);
  expect_blocks_bit_identical<DType::Q4_1>(rng);
  expect_blocks_bit_identical<DType::Q5_0>(rng);
  expect_blocks_bit_identical<DType::Q5_1>(rng);
  expect_blocks_bit_identical<DType::Q8_0>(rng);
  expect_blocks_bit_identical<DType::Q2_K>(rng);
  expect_blocks_bit_identical<DType::Q3_K>(rng);
  expect_blocks_bit_identical<DType::Q4_K>(rng);
  expect_blocks_bit_identical<DType::Q5_K>(rng);
  expect_blocks_bit_identical<DType::Q6_K>(rng);
  expect_blocks_bit_identical<DType::IQ4_NL>(rng);
  expect_blocks_bit_identical<DType::IQ4_XS>(rng);
}

TEST(QuantDecodeHost, FloatRowsAreBitIdenticalToTheReference) {
  // Every 16-bit pattern (NaNs included: the host path must keep their payload as the
  // reference does) and random f32 patterns.
  std::vector<uint16_t> halves(65536);
  for (int i = 0; i < 65536; ++i) halves[i] = static_cast<uint16_t>(i);
  std::vector<float> want(65536);
  const auto* row = reinterpret_cast<const uint8_t*>(halves.data());
  quant::dequantize_row(DType::F16, halves.data(), want.data(), 65536);
  for (int i = 0; i < 65536; ++i) ASSERT_EQ(f32_to_bits(float_row_value<DType::F16>(row, i)), f32_to_bits(want[i])) << i;
  quant::dequantize_row(DType::BF16, halves.data(), want.data(), 65536);
  for (int i = 0; i < 65536; ++i) ASSERT_EQ(f32_to_bits(float_row_value<DType::BF16>(row, i)), f32_to_bits(want[i])) << i;
  std::mt19937 rng(2);
  std::vector<uint32_t> words(4096);
  for (auto& w : words) w = rng();
  const auto* wrow = reinterpret_cast<const uint8_t*>(words.data());
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(f32_to_bits(float_row_value<DType::F32>(wrow, i)), words[i]) << i;
}

TEST(QuantDecodeHost, Iq4LookupMatchesTheCodebook) {
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(static_cast<int8_t>(kIQ4Words[i / 4] >> (8 * (i % 4))), quant::kIQ4NLValues[i]) << i;
  }
  for (uint32_t n = 0; n < 65536; ++n) {  // every combination of four indices
    const uint32_t packed = (n & 0xF) | ((n >> 4 & 0xF) << 8) | ((n >> 8 & 0xF) << 16) | ((n >> 12 & 0xF) << 24);
    const uint32_t v = iq4_lookup4(packed);
    for (int j = 0; j < 4; ++j) {
      ASSERT_EQ(static_cast<int8_t>(v >> (8 * j)), quant::kIQ4NLValues[(packed >> (8 * j)) & 0xF]) << n << " byte " << j;
    }
  }
}

TEST(QuantDecodeHost, ByteHelpers) {
  std::mt19937 rng(3);
  for (int i = 0; i < 10000; ++i) {
    const uint32_t a = rng(), b = rng();
    int want = 0;
    for (int j = 0; j < 4; ++j) want += static_cast<int8_t>(a >> (8 * j)) * static_cast<int8_t>(b >> (8 * j));
    ASSERT_EQ(dp4a(static_cast<int>(a), static_cast<int>(b), 7), want + 7);
    for (uint32_t bias : {4u, 8u, 16u, 32u}) {
      const uint32_t v = a & (0x01010101u * (2 * bias - 1));  // each byte in 0 .. 2*bias-1
      const uint32_t r = sub_bytes(v, bias);
      for (int j = 0; j < 4; ++j) {
        ASSERT_EQ(static_cast<int8_t>(r >> (8 * j)), static_cast<int>((v >> (8 * j)) & 0xFF) - static_cast<int>(bias));
      }
    }
    const uint32_t h4 = a & 0xF, s = spread_bits_to_bit4(h4);
    for (int j = 0; j < 4; ++j) ASSERT_EQ((s >> (8 * j)) & 0xFF, ((h4 >> j) & 1) << 4);
  }
}

// Quantizes 32 activations as the device does.
void quantize_act(const float* x, uint32_t* q, float& d, float& sum) {
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  d = act_scale(amax);
  int total = 0;
  int8_t codes[32];
  for (int i = 0; i < 32; ++i) {
    const int c = act_code(x[i], d);
    EXPECT_LE(std::abs(c), 127);
    EXPECT_LE(std::fabs(x[i] - d * static_cast<float>(c)), d * 0.5f * 1.0001f);
    codes[i] = static_cast<int8_t>(c);
    total += c;
  }
  std::memcpy(q, codes, 32);
  sum = d * static_cast<float>(total);
}

template <DType T>
void expect_dot_matches(std::mt19937& rng) {
  constexpr int kBlocks = 500;
  const DTypeInfo& info = dtype_info(T);
  const std::vector<uint8_t> bytes = random_blocks(T, kBlocks, rng, true);
  std::normal_distribution<float> normal;
  for (int b = 0; b < kBlocks; ++b) {
    const uint8_t* block = bytes.data() + static_cast<size_t>(b) * info.block_bytes;
    for (int sub = 0; sub < QuantType<T>::kSubs; ++sub) {
      float x[32], w[32];
      for (float& v : x) v = normal(rng) * (b % 2 ? 1.0f : 1e-3f);
      uint32_t a[8];
      float d = 0, sum = 0;
      quantize_act(x, a, d, sum);
      decode_sub<T>(block, sub, w);
      double want = 0, magnitude = 0;
      for (int i = 0; i < 32; ++i) {
        const double term = static_cast<double>(w[i]) * d * static_cast<int8_t>(a[i / 4] >> (8 * (i % 4)));
        want += term;
        magnitude += std::fabs(term);
      }
      SubBlock s;
      QuantType<T>::decode(block, sub, s);
      const float got = dot_sub<T>(s, a, d, sum);
      ASSERT_NEAR(got, want, 1e-5 * magnitude + 1e-30) << dtype_name(T) << " block " << b << " sub " << sub;
    }
  }
}

TEST(QuantDecodeHost, SubBlockDotMatchesDecodedValues) {
  std::mt19937 rng(4);
  expect_dot_matches<DType::Q4_0>(rng);
  expect_dot_matches<DType::Q4_1>(rng);
  expect_dot_matches<DType::Q5_0>(rng);
  expect_dot_matches<DType::Q5_1>(rng);
  expect_dot_matches<DType::Q8_0>(rng);
  expect_dot_matches<DType::Q2_K>(rng);
  expect_dot_matches<DType::Q3_K>(rng);
  expect_dot_matches<DType::Q4_K>(rng);
  expect_dot_matches<DType::Q5_K>(rng);
  expect_dot_matches<DType::Q6_K>(rng);
  expect_dot_matches<DType::IQ4_NL>(rng);
  expect_dot_matches<DType::IQ4_XS>(rng);
}

TEST(QuantDecodeHost, FieldAlignment) {
  // What the device loads assume, given a 16-byte aligned row start.
  EXPECT_EQ(field_align(144, 16), 16);  // Q4_K qs
  EXPECT_EQ(field_align(136, 8), 8);    // IQ4_XS qs
  EXPECT_EQ(field_align(18, 2), 2);     // Q4_0 qs
  EXPECT_EQ(field_align(84, 16), 4);    // Q2_K qs
  EXPECT_EQ(field_align(210, 128), 2);  // Q6_K qh
}

}  // namespace
}  // namespace tandem::cuda
