// Error checking for every CUDA runtime and cuBLAS call: a failed call becomes a
// tandem::Error naming the call, the source line and the driver's message (never a silent
// wrong answer). The throwing functions live in cuda_context.cpp so that .cu files need
// not include fmt.
#pragma once

#include <cuda_runtime_api.h>

namespace tandem::cuda {

[[noreturn]] void fail_cuda(cudaError_t status, const char* expr, const char* file, int line);
[[noreturn]] void fail_cublas(int status, const char* expr, const char* file, int line);

}  // namespace tandem::cuda

#define TANDEM_CUDA_CHECK(expr)                                                          \
  do {                                                                                   \
    const cudaError_t tandem_status_ = (expr);                                           \
    if (tandem_status_ != cudaSuccess) ::tandem::cuda::fail_cuda(tandem_status_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, not at a later sync.
#define TANDEM_CUDA_CHECK_LAUNCH() TANDEM_CUDA_CHECK(cudaGetLastError())

#define TANDEM_CUBLAS_CHECK(expr)                                                        \
  do {                                                                                   \
    const int tandem_status_ = static_cast<int>(expr);                                   \
    if (tandem_status_ != 0) ::tandem::cuda::fail_cublas(tandem_status_, #expr, __FILE__, __LINE__); \
  } while (0)
