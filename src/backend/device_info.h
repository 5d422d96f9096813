// Which compute devices this process can use: the CPU (always) and CUDA GPUs when the
// build has the CUDA backend and a driver/device is present.
#pragma once

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

#if defined(TANDEM_HAVE_CUDA)
namespace cuda {
GpuProbe probe();  // in backend/cuda/cuda_device.cu
}
#endif

}  // namespace tandem
