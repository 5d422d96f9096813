// CUDA device discovery. The rest of the CUDA backend (kernels, buffers, streams) builds
// on this; today it only answers "which GPUs are there and how much memory is free".
#include <cuda_runtime.h>

#include <string>

#include "backend/device_info.h"

namespace tandem::cuda {

GpuProbe probe() {
  GpuProbe result;
  result.built_with_cuda = true;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    result.notice = std::string("no CUDA device: ") + cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return result;
  }
  if (count == 0) {
    result.notice = "no CUDA device found";
    return result;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    status = cudaGetDeviceProperties(&prop, i);
    if (status != cudaSuccess) {
      result.notice = std::string("cudaGetDeviceProperties failed: ") + cudaGetErrorString(status);
      continue;
    }
    GpuInfo info;
    info.index = i;
    info.name = prop.name;
    info.compute_major = prop.major;
    info.compute_minor = prop.minor;
    info.total_bytes = prop.totalGlobalMem;
    info.multiprocessors = prop.multiProcessorCount;
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      info.free_bytes = free_bytes;
    }
    result.gpus.push_back(info);
  }
  return result;
}

}  // namespace tandem::cuda
