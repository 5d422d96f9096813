#include "backend/device_info.h"

#include "core/error.h"

namespace tandem {

GpuProbe probe_gpus() {
#if defined(TANDEM_HAVE_CUDA)
  return cuda::probe();
#else
  GpuProbe probe;
  probe.notice = "built without CUDA (configure with -DTANDEM_CUDA=ON)";
  return probe;
#endif
}

GpuBandwidth measure_gpu_bandwidth(int device, size_t bytes) {
#if defined(TANDEM_HAVE_CUDA)
  return cuda::measure_bandwidth(device, bytes);
#else
  (void)device, (void)bytes;
  fail("cannot measure GPU bandwidth: built without CUDA (configure with -DTANDEM_CUDA=ON)");
#endif
}

}  // namespace tandem
