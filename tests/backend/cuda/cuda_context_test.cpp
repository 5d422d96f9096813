// The CUDA foundation: buffers round-trip and a failed CUDA call is an error naming the call.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <numeric>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "cuda_test_support.h"

namespace tandem::cuda {
namespace {

TEST(CudaContext, BufferRoundTrip) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  std::vector<float> host(1000);
  std::iota(host.begin(), host.end(), 0.5f);
  DeviceBuffer d = testing::upload(host);
  EXPECT_EQ(testing::download<float>(d, host.size()), host);
  CudaContext ctx;
  ctx.synchronize();
}

TEST(CudaContext, FailedCallNamesTheCall) {
  // Needs no device: an invalid copy direction fails in the runtime either way.
  try {
    TANDEM_CUDA_CHECK(cudaMemcpy(nullptr, nullptr, 16, static_cast<cudaMemcpyKind>(77)));
    FAIL() << "no error raised";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cudaMemcpy"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem::cuda
