#include "backend/cuda/cuda_context.h"

#include <cublas_v2.h>


#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace tandem::cuda {

void fail_cuda(cudaError_t status, const char* expr, const char* file, int line) {
  fail("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(status), cudaGetErrorString(status), expr, file, line);
}

void fail_cublas(int status, const char* expr, const char* file, int line) {
  fail("cuBLAS error {} ({}) in {} at {}:{}", status,
       cublasGetStatusString(static_cast<cublasStatus_t>(status)), expr, file, line);
}

bool device_available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

bool device_has_mma() {
  static const bool has = [] {
    int device = 0, major = 0;
    if (!device_available() || cudaGetDevice(&device) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 8;
  }();
  return has;
}

namespace {
void release_device(void* p) { cudaFree(p); }
void release_pinned(void* p) { cudaFreeHost(p); }
}  // namespace

DeviceBuffer::DeviceBuffer(size_t bytes) {
  if (bytes == 0) return;
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    fail("cannot allocate {} bytes of GPU memory: {}", bytes, cudaGetErrorString(status));
  }
  Memory::operator=(Memory(p, bytes, release_device));
}

PinnedBuffer::PinnedBuffer(size_t bytes) {
  if (bytes == 0) return;
  void* p = nullptr;
  const cudaError_t status = cudaMallocHost(&p, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    fail("cannot allocate {} bytes of pinned host memory: {}", bytes, cudaGetErrorString(status));
  }
  Memory::operator=(Memory(p, bytes, release_pinned));
}

CudaContext::CudaContext(int device) : device_(device) {
  TANDEM_CUDA_CHECK(cudaSetDevice(device));
  TANDEM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TANDEM_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  TANDEM_CUBLAS_CHECK(cublasCreate(&cublas_));
  TANDEM_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
}

CudaContext::~CudaContext() {
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void CudaContext::synchronize() const {
  TANDEM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  TANDEM_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  TANDEM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  // From pageable memory cudaMemcpy may return before the DMA lands, and the contexts'
  // streams are non-blocking (they do not wait for the legacy stream): wait for it, so a
  // kernel launched next on any stream reads the bytes (set-up only, never per token).
  TANDEM_CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  TANDEM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

}  // namespace tandem::cuda
