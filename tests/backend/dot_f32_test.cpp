// The float dot rows against a double-precision sum, for every remainder of the row length
// and of the token count: f32 weights (portable and AVX2), F16 and BF16 weights widened in
// registers (portable and AVX2), and BF16 x BF16 with vdpbf16ps (emulated by SIMDe here;
// natively where the CPU has AVX512-BF16) against the sum of the bf16-rounded products.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/dot_bf16_dp.h"
#include "backend/cpu/dot_f32.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "support/test_support.h"

namespace tandem::cpu {
namespace {

TEST(DotRows, Avx2MatchesPortable) {
  TANDEM_SKIP_WITHOUT_ISA(cpu_features().avx2 && cpu_features().fma, "avx2 fma", "no AVX2+FMA on this CPU");
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  for (int64_t n : {1, 7, 8, 9, 16, 17, 64, 100, 896}) {
    for (int64_t tokens : {1, 2, 3, 4, 5, 9}) {
      std::vector<float> w(static_cast<size_t>(n)), x(static_cast<size_t>(n * tokens));
      for (float& v : w) v = normal(rng);
      for (float& v : x) v = normal(rng);
      std::vector<float> a(static_cast<size_t>(tokens * 3)), b(a.size());
      dot_rows_portable(w.data(), x.data(), n, tokens, n, a.data(), 3, 0.5f);
      dot_rows_avx2(w.data(), x.data(), n, tokens, n, b.data(), 3, 0.5f);
      for (int64_t t = 0; t < tokens; ++t) {
        float magnitude = 0;
        for (int64_t i = 0; i < n; ++i) magnitude += std::fabs(w[i] * x[t * n + i]);
        EXPECT_NEAR(a[t * 3], b[t * 3], 1e-5f * (magnitude + 1)) << "n=" << n << " t=" << t;
      }
    }
  }
}

// C += A B against a double sum, A plain and transposed, for every remainder of the 4-row
// and 16-column register block; C starts non-zero (the product accumulates).
TEST(GemmAcc, MatchesTheExactProduct) {
  std::mt19937 rng(14);
  std::normal_distribution<float> normal;
  const bool avx2 = cpu_features().avx2 && cpu_features().fma;
  for (int64_t M : {1, 3, 4, 5, 9, 64}) {
    for (int64_t N : {1, 15, 16, 17, 40, 128}) {
      for (int64_t P : {1, 7, 64}) {
        for (const bool transposed : {false, true}) {
          // A stored [M][P+2] or [P][M+3] (padding: strides are not the extent).
          const int64_t a_row = transposed ? 1 : P + 2, a_col = transposed ? M + 3 : 1;
          std::vector<float> a(static_cast<size_t>(transposed ? P * (M + 3) : M * (P + 2)));
          std::vector<float> b(static_cast<size_t>(P * (N + 1))), c0(static_cast<size_t>(M * (N + 5)));
          for (float& x : a) x = normal(rng);
          for (float& x : b) x = normal(rng);
          for (float& x : c0) x = normal(rng);
          const std::pair<GemmAccFn, const char*> paths[] = {{gemm_acc_portable, "portable"}, {gemm_acc_avx2, "avx2"}};
          for (const auto& [fn, path] : paths) {
            if (!avx2 && fn == gemm_acc_avx2) continue;
            std::vector<float> c = c0;
            fn(M, N, P, a.data(), a_row, a_col, b.data(), N + 1, c.data(), N + 5);
            for (int64_t m = 0; m < M; ++m) {
              for (int64_t j = 0; j < N + 5; ++j) {
                double want = c0[m * (N + 5) + j], magnitude = std::fabs(want);
                if (j < N) {
                  for (int64_t p = 0; p < P; ++p) {
                    const double t = static_cast<double>(a[m * a_row + p * a_col]) * b[p * (N + 1) + j];
                    want += t;
                    magnitude += std::fabs(t);
                  }
                }
                ASSERT_NEAR(c[m * (N + 5) + j], want, 1e-6 * magnitude + 1e-7)
                    << path << " M=" << M << " N=" << N << " P=" << P << " transposed=" << transposed << " at " << m
                    << "," << j;
              }
            }
          }
        }
      }
    }
  }
  TANDEM_SKIP_WITHOUT_ISA(avx2, "avx2 fma", "no AVX2+FMA on this CPU; only the portable product ran");
}

// The shapes every case runs: row lengths around the vector widths (8, 16, 32), token
// counts around the four-row pass; y is written with a stride of 3 (a column of a matrix).
struct HalfCase {
  std::vector<uint16_t> w, x16;  // weights; activations rounded to bf16 (for the dp kernel)
  std::vector<float> x;
  int64_t n, tokens;
};

template <class Check>
void for_each_half_case(DType type, Check check) {
  std::mt19937 rng(12);
  std::normal_distribution<float> normal;
  for (int64_t n : {1, 7, 8, 15, 16, 17, 31, 32, 33, 48, 100, 896}) {
    for (int64_t tokens : {1, 2, 3, 4, 5, 9}) {
      HalfCase c{{}, {}, {}, n, tokens};
      for (int64_t i = 0; i < n; ++i) {
        const float v = normal(rng);
        c.w.push_back(type == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v));
      }
      for (int64_t i = 0; i < n * tokens; ++i) c.x.push_back(normal(rng));
      c.x16.resize(c.x.size());
      round_to_bf16(c.x.data(), tokens, n, c.x16.data());
      check(c);
    }
  }
}

float widen(DType type, uint16_t v) { return type == DType::F16 ? f16_to_f32(v) : bf16_to_f32(v); }

// y (stride 3) against sum_i weight(w[i]) * act(i) in double, within f32 rounding of the
// products' magnitude.
template <class Act>
void expect_rows(const HalfCase& c, DType type, const std::vector<float>& y, Act act, const char* path) {
  for (int64_t t = 0; t < c.tokens; ++t) {
    double exact = 0, magnitude = 0;
    for (int64_t i = 0; i < c.n; ++i) {
      const double p = static_cast<double>(widen(type, c.w[i])) * act(t * c.n + i);
      exact += p;
      magnitude += std::fabs(p);
    }
    EXPECT_NEAR(y[t * 3], exact + 0.5, 2e-6 * (magnitude + 1)) << path << " n=" << c.n << " t=" << t;
  }
}

TEST(DotRowsHalf, WidenedRowsMatchTheExactSum) {
  const bool avx2 = cpu_features().avx2 && cpu_features().fma && cpu_features().f16c;
  for (DType type : {DType::F16, DType::BF16}) {
    const auto portable = type == DType::F16 ? dot_rows_f16_portable : dot_rows_bf16_portable;
    const auto simd = type == DType::F16 ? dot_rows_f16_avx2 : dot_rows_bf16_avx2;
    for_each_half_case(type, [&](const HalfCase& c) {
      std::vector<float> y(static_cast<size_t>(c.tokens * 3));
      const auto f32 = [&](int64_t i) { return static_cast<double>(c.x[i]); };
      portable(c.w.data(), c.x.data(), c.n, c.tokens, c.n, y.data(), 3, 0.5f);
      expect_rows(c, type, y, f32, "portable");
      if (avx2) {
        simd(c.w.data(), c.x.data(), c.n, c.tokens, c.n, y.data(), 3, 0.5f);
        expect_rows(c, type, y, f32, "avx2");
      }
    });
  }
  TANDEM_SKIP_WITHOUT_ISA(avx2, "avx2 fma f16c", "no AVX2+FMA+F16C on this CPU; only the portable rows ran");
}

TEST(DotRowsHalf, RoundToBf16IsNearestEven) {
  const float in[] = {1.0f, bits_to_f32(0x3f808000u), bits_to_f32(0x3f818000u), bits_to_f32(0x3f808001u), -2.5f};
  uint16_t out[5];
  round_to_bf16(in, 1, 5, out);
  EXPECT_EQ(out[0], 0x3f80);  // exact
  EXPECT_EQ(out[1], 0x3f80);  // halfway, to even (down)
  EXPECT_EQ(out[2], 0x3f82);  // halfway, to even (up)
  EXPECT_EQ(out[3], 0x3f81);  // above halfway
  EXPECT_EQ(out[4], 0xc020);
}

void check_bf16_dp(Bf16DotRowsFn dp, const char* path) {
  for_each_half_case(DType::BF16, [&](const HalfCase& c) {
    std::vector<float> y(static_cast<size_t>(c.tokens * 3));
    dp(c.w.data(), c.x16.data(), c.n, c.tokens, c.n, y.data(), 3, 0.5f);
    expect_rows(c, DType::BF16, y, [&](int64_t i) { return static_cast<double>(bf16_to_f32(c.x16[i])); }, path);
  });
}

TEST(DotRowsBf16Dp, EmulatedMatchesTheExactSum) {
  TANDEM_SKIP_WITHOUT_ISA(cpu_features().avx2 && cpu_features().fma, "avx2 fma", "no AVX2+FMA, which the emulated build needs");
  check_bf16_dp(bf16_emulated::dot_rows_bf16_dp, "emulated vdpbf16ps");
}

TEST(DotRowsBf16Dp, NativeMatchesTheExactSum) {
  const Bf16DotRowsFn native = native_dot_rows_bf16_dp();
  TANDEM_SKIP_WITHOUT_ISA(native != nullptr, "avx512bf16 avx512vl",
                          "no AVX512-BF16 on this CPU; the vdpbf16ps kernel ran emulated (SIMDe) only");
  check_bf16_dp(native, "native vdpbf16ps");
}

}  // namespace
}  // namespace tandem::cpu
