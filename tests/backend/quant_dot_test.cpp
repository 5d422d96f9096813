// Integer dot kernels against an independent oracle: the reference dequantizer
// (bit-exact with gguf-py, tests/quant) applied to both the weight row and the quantized
// activations, then a double-precision dot. Weight blocks are random bytes with sane
// f16 scales, so every code and scale bit pattern occurs; real blocks come from the
// small real model. Every ISA path this CPU can run is checked, and the SIMD paths must
// agree with the scalar one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/dot_bf16_dp.h"
#include "backend/cpu/quant_dot.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "gguf/gguf_model_files.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "support/test_support.h"
#include "support/random_blocks.h"

namespace tandem::cpu {
namespace {

const DType kTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,  DType::Q8_0, DType::IQ4_NL,
                        DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS};

// Every path this CPU executes, not just the best one: production still runs the AVX2 row
// kernels on AVX-VNNI and AVX-512 machines (the VNNI paths swap in only their group dots).
// A path TANDEM_REQUIRE_ISA names that does not run here is a failure.
using testing::runnable_isas;

// n_rows rows of random blocks; scale fields get finite values of either sign.
std::vector<uint8_t> random_rows(DType t, int64_t n, int64_t n_rows, std::mt19937& rng) {
  return testing::random_blocks(t, n / dtype_info(t).block_elems * n_rows, rng);
}

// Activations as floats from their quantized bytes (Q8_1 has no dequantizer of its own).
std::vector<float> decode_activation(DType act, const uint8_t* a, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  if (act == DType::Q8_1) {
    for (int64_t b = 0; b < n / 32; ++b) {
      quant::BlockQ8_1 blk;
      std::memcpy(&blk, a + b * sizeof(blk), sizeof(blk));
      for (int i = 0; i < 32; ++i) out[b * 32 + i] = f16_to_f32(blk.d) * blk.qs[i];
    }
  } else {
    quant::dequantize_row(act, a, out.data(), n);
  }
  return out;
}

struct Oracle {
  double dot = 0;        // of the dequantized rows
  double magnitude = 0;  // sum |w_i a_i|, the scale of rounding error
};

Oracle oracle(DType type, const uint8_t* w, const std::vector<float>& a, int64_t n) {
  std::vector<float> wf(static_cast<size_t>(n));
  quant::dequantize_row(type, w, wf.data(), n);
  Oracle o;
  for (int64_t i = 0; i < n; ++i) {
    o.dot += static_cast<double>(wf[i]) * a[i];
    o.magnitude += std::fabs(static_cast<double>(wf[i]) * a[i]);
  }
  return o;
}

// Q4_1/Q5_1 use the activation block's f16-rounded s = d * sum(q), as ggml does: allow
// for that rounding (|m| * |s| * 2^-11 per block) on top of float rounding.
double tolerance(DType type, const Oracle& o, const uint8_t* w, const uint8_t* a, int64_t n) {
  double tol = 2e-5 * o.magnitude + 1e-6;
  if (type == DType::Q4_1 || type == DType::Q5_1) {
    const size_t wb = dtype_info(type).block_bytes;
    for (int64_t b = 0; b < n / 32; ++b) {
      uint16_t m;
      std::memcpy(&m, w + b * wb + 2, 2);
      quant::BlockQ8_1 blk;
      std::memcpy(&blk, a + b * sizeof(blk), sizeof(blk));
      tol += std::fabs(f16_to_f32(m) * f16_to_f32(blk.s)) / 1024.0;
    }
  }
  return tol;
}

TEST(QuantDot, EveryKernelMatchesTheDequantizedOracle) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (Isa isa : runnable_isas()) {
    for (DType type : kTypes) {
      const QuantDotKernel k = quant_dot_kernel(type, isa);
      ASSERT_TRUE(k) << dtype_name(type);
      const int64_t n = 512;
      const std::vector<uint8_t> w = random_rows(type, n, 1, rng);
      // 1..3 columns are the remainder kernels, 4 the folded one, 8 the eight-wide one of the
      // 32-element types, and the others mixes of them in one call.
      for (int cols = 1; cols <= 15; ++cols) {
        const size_t act_row = activation_row_bytes(k, n);
        std::vector<uint8_t> act(act_row * cols);
        std::vector<float> x(n);
        for (int c = 0; c < cols; ++c) {
          for (float& v : x) v = normal(rng) * (c + 1);
          k.quantize(x.data(), act.data() + c * act_row, n);
        }
        std::vector<float> out(cols * 3, -1.0f);
        k.dot(n, w.data(), act.data(), act_row, cols, out.data(), 3);
        for (int c = 0; c < cols; ++c) {
          const uint8_t* a = act.data() + c * act_row;
          const Oracle o = oracle(type, w.data(), decode_activation(k.activation, a, n), n);
          EXPECT_NEAR(out[c * 3], o.dot, tolerance(type, o, w.data(), a, n))
              << isa_name(isa) << " " << dtype_name(type) << " column " << c << " of " << cols;
        }
      }
    }
  }
}

TEST(QuantDot, SimdPathsAgreeWithScalar) {
  TANDEM_SKIP_WITHOUT_ISA(best_isa() != Isa::scalar, testing::isa_features(Isa::avx2),
                          "this CPU runs the scalar path only");
  std::mt19937 rng(8);
  std::normal_distribution<float> normal;
  for (Isa isa : runnable_isas()) {
    if (isa == Isa::scalar) continue;
    for (DType type : kTypes) {
      const QuantDotKernel scalar = quant_dot_kernel(type, Isa::scalar), simd = quant_dot_kernel(type, isa);
      for (int64_t n : {256, 768, 2048}) {
        const std::vector<uint8_t> w = random_rows(type, n, 1, rng);
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = normal(rng);
        // The SIMD quantizer gives the same bytes as the scalar one.
        const size_t act_row = activation_row_bytes(scalar, n);
        std::vector<uint8_t> a_scalar(act_row), a_simd(act_row);
        scalar.quantize(x.data(), a_scalar.data(), n);
        simd.quantize(x.data(), a_simd.data(), n);
        ASSERT_EQ(a_scalar, a_simd) << isa_name(isa) << " " << dtype_name(type) << " activation quantizer";
        float r_scalar, r_simd;
        scalar.dot(n, w.data(), a_scalar.data(), act_row, 1, &r_scalar, 1);
        simd.dot(n, w.data(), a_simd.data(), act_row, 1, &r_simd, 1);
        const Oracle o = oracle(type, w.data(), decode_activation(scalar.activation, a_scalar.data(), n), n);
        EXPECT_NEAR(r_scalar, r_simd, 2e-5 * o.magnitude + 1e-6) << isa_name(isa) << " " << dtype_name(type) << " n=" << n;
      }
    }
  }
}

TEST(QuantDot, Q8_0RowsCarryEachBlocksCodeSumAndScale) {
  // The block32 group dots read the sums and scales from the row's tail (quant_dot.h);
  // every path's quantizer writes them, padding included, for any block count.
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (Isa isa : runnable_isas()) {
    const QuantDotKernel k = quant_dot_kernel(DType::Q5_0, isa);
    ASSERT_EQ(k.activation, DType::Q8_0);
    for (int64_t n : {32, 96, 256, 896, 1120}) {
      SCOPED_TRACE(std::string(isa_name(isa)) + " n=" + std::to_string(n));
      const int64_t nb = n / 32, padded = (nb + 7) / 8 * 8;
      const size_t row = activation_row_bytes(k, n);
      ASSERT_EQ(row, static_cast<size_t>(nb * 34 + padded * 4));
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = normal(rng);
      std::vector<uint8_t> a(row, 0xAB);  // garbage the quantizer must overwrite
      k.quantize(x.data(), a.data(), n);
      const auto* blocks = reinterpret_cast<const quant::BlockQ8_0*>(a.data());
      for (int64_t b = 0; b < padded; ++b) {
        int16_t sum;
        uint16_t d;
        std::memcpy(&sum, a.data() + nb * 34 + 2 * b, 2);
        std::memcpy(&d, a.data() + nb * 34 + padded * 2 + 2 * b, 2);
        int want = 0;
        if (b < nb) {
          for (int8_t q : blocks[b].qs) want += q;
        }
        EXPECT_EQ(sum, want) << "block " << b;
        EXPECT_EQ(d, b < nb ? blocks[b].d : 0) << "block " << b;
      }
    }
  }
}

// The SIMD Q8_K quantizer against the reference byte for byte on the blocks where a
// shortcut would differ: the largest magnitude twice with both signs (the first one sets
// the sign), at the last element, all zeros, only -0, a lone subnormal, halves that round
// to even, and blocks with a NaN or an infinity (handed to the reference).
TEST(QuantDot, SimdQ8KQuantizerEqualsTheReferenceOnEdgeBlocks) {
  TANDEM_SKIP_WITHOUT_ISA(best_isa() != Isa::scalar, testing::isa_features(Isa::avx2),
                          "this CPU runs the scalar path only");
  std::mt19937 rng(21);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> blocks;
  auto random_block = [&] {
    std::vector<float> b(256);
    for (float& v : b) v = normal(rng);
    return b;
  };
  for (int i = 0; i < 8; ++i) blocks.push_back(random_block());
  {
    auto b = random_block();
    b[17] = 9.0f;
    b[200] = -9.0f;  // same magnitude later: 9 stays the max, codes of -9 are 127
    blocks.push_back(b);
    b[17] = -9.0f;
    b[200] = 9.0f;
    blocks.push_back(b);
  }
  {
    auto b = random_block();
    b[255] = -50.0f;
    blocks.push_back(b);
  }
  blocks.push_back(std::vector<float>(256, 0.0f));
  blocks.push_back(std::vector<float>(256, -0.0f));
  {
    std::vector<float> b(256, 0.0f);
    b[100] = 1e-40f;
    blocks.push_back(b);
  }
  {
    // x = k/2 * (max/127): iscale * x lands on halves, which round to even.
    std::vector<float> b(256);
    for (int i = 0; i < 256; ++i) b[i] = static_cast<float>((i % 255) - 127) * 0.5f;
    b[0] = 127.0f;
    blocks.push_back(b);
  }
  for (float special : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                        -std::numeric_limits<float>::infinity()}) {
    auto b = random_block();
    b[40] = special;
    blocks.push_back(b);
  }
  for (Isa isa : runnable_isas()) {
    if (isa == Isa::scalar) continue;
    const QuantizeRowFn simd = quant_dot_kernel(DType::Q4_K, isa).quantize;
    ASSERT_EQ(quant_dot_kernel(DType::Q4_K, isa).activation, DType::Q8_K);
    std::vector<float> row;
    for (const auto& b : blocks) row.insert(row.end(), b.begin(), b.end());
    const int64_t n = static_cast<int64_t>(row.size());
    std::vector<uint8_t> want(activation_row_bytes(quant_dot_kernel(DType::Q4_K, Isa::scalar), n)), got(want.size());
    quant::quantize_row(DType::Q8_K, row.data(), want.data(), n);
    simd(row.data(), got.data(), n);
    for (size_t b = 0; b < blocks.size(); ++b) {
      const size_t bytes = sizeof(quant::BlockQ8_K);
      EXPECT_EQ(0, std::memcmp(want.data() + b * bytes, got.data() + b * bytes, bytes))
          << isa_name(isa) << ": block " << b << " differs from the reference";
    }
  }
}

TEST(QuantDot, ActivationQuantizersRoundToNearest) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  for (Isa isa : runnable_isas()) {
    for (DType weight : {DType::Q4_0, DType::Q4_1, DType::Q4_K}) {
      const QuantDotKernel k = quant_dot_kernel(weight, isa);
      const int64_t n = 512;
      std::vector<float> x(n);
      for (float& v : x) v = normal(rng);
      x[3] = 0;
      std::fill(x.begin() + 256, x.begin() + 288, 0.0f);  // an all-zero block gives d = 0
      std::vector<uint8_t> a(activation_row_bytes(k, n));
      k.quantize(x.data(), a.data(), n);
      const std::vector<float> back = decode_activation(k.activation, a.data(), n);
      const int block = k.activation == DType::Q8_K ? 256 : 32;
      for (int64_t b = 0; b < n / block; ++b) {
        float amax = 0;
        for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(x[b * block + i]));
        for (int i = 0; i < block; ++i) {
          // half a step, plus the f16 rounding of d for Q8_0/Q8_1
          EXPECT_NEAR(back[b * block + i], x[b * block + i], amax / 127 * 0.502 + amax * 1e-3 * (block == 32))
              << isa_name(isa) << " " << dtype_name(k.activation) << " element " << b * block + i;
        }
      }
    }
  }
}

// matmul through the pool (2 threads) with biases and token counts that cross the kernel's
// column groups and the 64-token tiles, against f32 math on the dequantized weights: the
// only difference is the activations' 8-bit rounding (at most half a step per element).
// A 2-D weight view over test bytes.
Tensor matrix_view(DType type, int64_t n_in, int64_t n_out, const uint8_t* data) {
  Tensor t;
  t.name = "w";
  t.type = type;
  t.ne[0] = n_in;
  t.ne[1] = n_out;
  t.n_dims = 2;
  t.data = data;
  return t;
}

TEST(QuantDot, MatmulMatchesFloatMath) {
  std::mt19937 rng(10);
  std::normal_distribution<float> normal;
  OpContext ctx(2, 1024);
  for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::IQ4_XS}) {
    const int64_t n_in = 512, n_out = 37;
    std::vector<uint8_t> w = random_rows(type, n_in, n_out, rng);
    const Tensor t = matrix_view(type, n_in, n_out, w.data());
    std::vector<float> wf(static_cast<size_t>(n_in * n_out)), bias(n_out);
    quant::dequantize_row(type, w.data(), wf.data(), n_in * n_out);
    for (float& b : bias) b = normal(rng);
    for (int64_t tokens : {1, 5, 70}) {
      std::vector<float> x(static_cast<size_t>(tokens * n_in)), y(static_cast<size_t>(tokens * n_out));
      for (float& v : x) v = normal(rng);
      matmul(ctx, t, x.data(), tokens, y.data(), bias.data());
      const int block = dtype_info(ctx.kernel(type).activation).block_elems;
      for (int64_t tok = 0; tok < tokens; ++tok) {
        for (int64_t o = 0; o < n_out; ++o) {
          double ref = bias[o], bound = 1e-4;
          for (int64_t b = 0; b < n_in / block; ++b) {
            float amax = 0;
            for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(x[tok * n_in + b * block + i]));
            for (int i = 0; i < block; ++i) {
              const int64_t e = b * block + i;
              ref += static_cast<double>(wf[o * n_in + e]) * x[tok * n_in + e];
              bound += std::fabs(wf[o * n_in + e]) * (amax / 127 * 0.502 + amax * 1e-3);
            }
          }
          ASSERT_NEAR(y[tok * n_out + o], ref, bound) << dtype_name(type) << " token " << tok << " row " << o;
        }
      }
    }
  }
}

// Float weights go through their own rows (f32; F16/BF16 widened in registers; BF16 x BF16
// on AVX512-BF16), in token tiles: 70 tokens cross two tile edges.
TEST(QuantDot, FloatWeightMatmulMatchesDoublePrecision) {
  std::mt19937 rng(13);
  std::normal_distribution<float> normal;
  OpContext ctx(2, 1024);
  const bool bf16_dp = native_dot_rows_bf16_dp() != nullptr;
  for (DType type : {DType::F32, DType::F16, DType::BF16}) {
    const int64_t n_in = 200, n_out = 37;
    std::vector<float> wf(static_cast<size_t>(n_in * n_out)), bias(n_out);
    for (float& v : wf) v = normal(rng);
    std::vector<uint8_t> w(wf.size() * dtype_info(type).block_bytes);
    for (size_t i = 0; i < wf.size(); ++i) {
      if (type == DType::F32) {
        std::memcpy(w.data() + i * 4, &wf[i], 4);
        continue;
      }
      const uint16_t h = type == DType::F16 ? f32_to_f16(wf[i]) : f32_to_bf16(wf[i]);
      std::memcpy(w.data() + i * 2, &h, 2);
      wf[i] = type == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    const Tensor t = matrix_view(type, n_in, n_out, w.data());
    for (float& b : bias) b = normal(rng);
    // bf16 activations (vdpbf16ps) are within 2^-9 of the f32 ones.
    const double relative = type == DType::BF16 && bf16_dp ? 1.0 / 256 : 1e-5;
    for (int64_t tokens : {1, 5, 70}) {
      std::vector<float> x(static_cast<size_t>(tokens * n_in)), y(static_cast<size_t>(tokens * n_out));
      for (float& v : x) v = normal(rng);
      matmul(ctx, t, x.data(), tokens, y.data(), bias.data());
      for (int64_t tok = 0; tok < tokens; ++tok) {
        for (int64_t o = 0; o < n_out; ++o) {
          double ref = bias[o], magnitude = 0;
          for (int64_t e = 0; e < n_in; ++e) {
            const double p = static_cast<double>(wf[o * n_in + e]) * x[tok * n_in + e];
            ref += p;
            magnitude += std::fabs(p);
          }
          ASSERT_NEAR(y[tok * n_out + o], ref, relative * magnitude + 1e-5)
              << dtype_name(type) << " token " << tok << " row " << o;
        }
      }
    }
  }
}

// Blocks of the small real model (Q4_K_M: Q4_K, Q6_K, Q5_0 and Q8_0 tensors).
TEST(QuantDot, RealModelBlocksMatchTheOracle) {
  TANDEM_REQUIRE_TEST_MODEL(path);
  const gguf::ModelFiles files = gguf::ModelFiles::open(path);
  std::mt19937 rng(12);
  std::normal_distribution<float> normal;
  int checked = 0;
  for (const gguf::TensorInfo* info_ptr : files.tensors()) {
    const gguf::TensorInfo& info = *info_ptr;
    if (!quant_dot_kernel(info.type, Isa::scalar) || info.dims.size() < 2) continue;
    const int64_t n = info.dims[0];
    const uint64_t row_bytes = info.n_bytes / static_cast<uint64_t>(info.rows());
    for (Isa isa : runnable_isas()) {
      const QuantDotKernel k = quant_dot_kernel(info.type, isa);
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = normal(rng);
      std::vector<uint8_t> a(activation_row_bytes(k, n));
      k.quantize(x.data(), a.data(), n);
      const std::vector<float> af = decode_activation(k.activation, a.data(), n);
      for (int64_t r : {int64_t{0}, info.rows() / 2, info.rows() - 1}) {
        const uint8_t* w = info.data + static_cast<uint64_t>(r) * row_bytes;
        float out;
        k.dot(n, w, a.data(), a.size(), 1, &out, 1);
        const Oracle o = oracle(info.type, w, af, n);
        EXPECT_NEAR(out, o.dot, tolerance(info.type, o, w, a.data(), n)) << info.name << " row " << r << " " << isa_name(isa);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 100);
}

}  // namespace
}  // namespace tandem::cpu
