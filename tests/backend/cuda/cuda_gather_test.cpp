// gather_rows (the per-expert token gather of prompt MoE) copies exactly the named rows,
// repeats included, zeros for the padding rows (-1), and rejects bad arguments before launching.
#include <gtest/gtest.h>

#include <random>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"
#include "core/error.h"
#include "cuda_test_support.h"

namespace tandem::cuda {
namespace {

TEST(CudaGather, CopiesTheNamedRows) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  const int64_t n_src = 37, n = 2048, n_rows = 96;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> src(static_cast<size_t>(n_src * n));
  for (float& v : src) v = normal(rng);
  std::vector<int32_t> rows(static_cast<size_t>(n_rows));
  for (auto& r : rows) r = static_cast<int32_t>(rng() % n_src);
  rows[3] = rows[50] = -1;  // padding rows: zeros
  DeviceBuffer d_src = testing::upload(src), d_rows = testing::upload(rows), d_dst(static_cast<size_t>(n_rows * n) * 4);
  gather_rows(nullptr, d_src.as<float>(), d_rows.as<int32_t>(), n_rows, n, d_dst.as<float>());
  TANDEM_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = testing::download<float>(d_dst, static_cast<size_t>(n_rows * n));
  for (int64_t i = 0; i < n_rows; ++i) {
    for (int64_t c = 0; c < n; ++c) {
      const int32_t from = rows[static_cast<size_t>(i)];
      ASSERT_EQ(got[static_cast<size_t>(i * n + c)], from < 0 ? 0.0f : src[static_cast<size_t>(from * n + c)]) << "row " << i;
    }
  }
}

TEST(CudaGather, BadArgumentsAreNamed) {
  float x = 0;
  int32_t r = 0;
  EXPECT_THROW(gather_rows(nullptr, &x, &r, 1, 1, &x), Error);         // dst aliases src
  EXPECT_THROW(gather_rows(nullptr, &x, nullptr, 1, 1, nullptr), Error);  // null rows
  EXPECT_THROW(gather_rows(nullptr, &x, &r, -1, 1, nullptr), Error);   // negative rows
}

}  // namespace
}  // namespace tandem::cuda
