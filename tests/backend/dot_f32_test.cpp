// The AVX2 dot-product path agrees with the portable one (to f32 rounding) for every
// remainder of the row length and of the token count.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/dot_f32.h"
#include "core/cpu_features.h"

namespace tandem::cpu {
namespace {

TEST(DotRows, Avx2MatchesPortable) {
  if (!(cpu_features().avx2 && cpu_features().fma)) GTEST_SKIP() << "SKIPPED: no AVX2+FMA on this CPU";
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

}  // namespace
}  // namespace tandem::cpu
