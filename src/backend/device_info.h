// Which compute devices this process can use: the CPU (always) and CUDA GPUs when the
// build has the CUDA backend and a driver/device is present.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tandem {

struct GpuInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
  int multiprocessors = 0;
};

struct GpuProbe {
  bool built_with_cuda = false;
  std::string notice;  // why no GPU is usable, e.g. "no CUDA device: <driver message>"
  std::vector<GpuInfo> gpus;
};

// Never throws: a missing driver or device is a notice, and the CPU is used.
GpuProbe probe_gpus();

// Measured bandwidths of one GPU in GB/s (1e9 bytes/s), best of several passes.
struct GpuBandwidth {
  double device_read_gbps = 0;     // reading device memory (the roofline of VRAM weights)
  double host_to_device_gbps = 0;  // pinned host -> device copy
  double device_to_host_gbps = 0;  // device -> pinned host copy
};
// Takes about a second over `bytes` of device memory. Fails (saying why) in a build
// without CUDA or when the device cannot be used.
GpuBandwidth measure_gpu_bandwidth(int device, size_t bytes = size_t{1} << 30);

#if defined(TANDEM_HAVE_CUDA)
namespace cuda {
GpuProbe probe();                                       // in backend/cuda/cuda_device.cu
GpuBandwidth measure_bandwidth(int device, size_t bytes);  // in backend/cuda/bandwidth.cu
}
#endif

}  // namespace tandem
