// `tandem devices`: what this machine offers (CPU features, CUDA GPUs).
#include <fmt/format.h>

#include <memory>
#include <thread>

#include "backend/device_info.h"
#include "cli/commands.h"
#include "core/cpu_features.h"

namespace tandem::cli {

void register_devices(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("devices", "Show the CPU features and GPUs tandem can use");
  auto bandwidth = std::make_shared<bool>(false);
  cmd->add_flag("--bandwidth", *bandwidth, "Also measure each GPU's memory read and host<->device copy bandwidth");
  cmd->callback([bandwidth] {
    fmt::print("cpu: {} threads, features: {}\n", std::thread::hardware_concurrency(),
               cpu_features().describe());
    const GpuProbe probe = probe_gpus();
    if (probe.gpus.empty()) fmt::print("gpu: none ({})\n", probe.notice);
    for (const GpuInfo& gpu : probe.gpus) {
      fmt::print("gpu {}: {} (sm_{}{}), {} SMs, {:.1f} GiB total, {:.1f} GiB free\n", gpu.index,
                 gpu.name, gpu.compute_major, gpu.compute_minor, gpu.multiprocessors,
                 gpu.total_bytes / 1073741824.0, gpu.free_bytes / 1073741824.0);
      if (*bandwidth) {
        const GpuBandwidth bw = measure_gpu_bandwidth(gpu.index);
        fmt::print("gpu {} bandwidth: read {:.0f} GB/s, host->device {:.1f} GB/s, device->host {:.1f} GB/s\n",
                   gpu.index, bw.device_read_gbps, bw.host_to_device_gbps, bw.device_to_host_gbps);
      }
    }
  });
}

}  // namespace tandem::cli
