// Measured bandwidths of one GPU: device memory read (the decode roofline of weights that
// live in VRAM) and pinned host<->device copies (what hybrid execution pays per layer and
// what streaming experts to the GPU costs). Best of several timed passes, CUDA events.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_context.h"
#include "backend/device_info.h"

namespace tandem::cuda {
namespace {

// Each thread reads 16-byte words with a grid stride; the sum is written only when it is
// impossible-looking, so the compiler cannot drop the loads and nothing is stored per pass.
__global__ void read_kernel(const uint4* __restrict__ data, size_t n, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint4 v = data[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;
}

class EventPair {
 public:
  EventPair() {
    TANDEM_CUDA_CHECK(cudaEventCreate(&start_));
    TANDEM_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~EventPair() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  void start(cudaStream_t s) { TANDEM_CUDA_CHECK(cudaEventRecord(start_, s)); }
  double stop_seconds(cudaStream_t s) {
    TANDEM_CUDA_CHECK(cudaEventRecord(stop_, s));
    TANDEM_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0;
    TANDEM_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return ms / 1e3;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace

GpuBandwidth measure_bandwidth(int device, size_t bytes) {
  CudaContext ctx(device);
  cudaDeviceProp prop{};
  TANDEM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  bytes = bytes / 16 * 16;
  DeviceBuffer data(bytes), sink(sizeof(unsigned));
  TANDEM_CUDA_CHECK(cudaMemsetAsync(data.data(), 1, bytes, ctx.stream()));
  EventPair timer;
  GpuBandwidth result;
  const int blocks = prop.multiProcessorCount * 8;
  for (int pass = 0; pass < 6; ++pass) {
    timer.start(ctx.stream());
    read_kernel<<<blocks, 256, 0, ctx.stream()>>>(data.as<uint4>(), bytes / 16, sink.as<unsigned>());
    TANDEM_CUDA_CHECK_LAUNCH();
    const double s = timer.stop_seconds(ctx.stream());
    if (pass > 0) result.device_read_gbps = std::max(result.device_read_gbps, bytes / s / 1e9);  // pass 0 warms up
  }
  const size_t copy_bytes = std::min<size_t>(bytes, size_t{256} << 20);
  PinnedBuffer host(copy_bytes);
  for (int pass = 0; pass < 4; ++pass) {
    timer.start(ctx.stream());
    TANDEM_CUDA_CHECK(cudaMemcpyAsync(data.data(), host.data(), copy_bytes, cudaMemcpyHostToDevice, ctx.stream()));
    result.host_to_device_gbps = std::max(result.host_to_device_gbps, copy_bytes / timer.stop_seconds(ctx.stream()) / 1e9);
    timer.start(ctx.stream());
    TANDEM_CUDA_CHECK(cudaMemcpyAsync(host.data(), data.data(), copy_bytes, cudaMemcpyDeviceToHost, ctx.stream()));
    result.device_to_host_gbps = std::max(result.device_to_host_gbps, copy_bytes / timer.stop_seconds(ctx.stream()) / 1e9);
  }
  return result;
}

}  // namespace tandem::cuda
