#include "backend/device_info.h"

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

}  // namespace tandem
