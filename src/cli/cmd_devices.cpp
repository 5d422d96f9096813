// `tandem devices`: what this machine offers (CPU features, CUDA GPUs).
#include <fmt/format.h>

#include <thread>

#include "backend/device_info.h"
#include "cli/commands.h"
#include "core/cpu_features.h"

namespace tandem::cli {

void register_devices(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("devices", "Show the CPU features and GPUs tandem can use");
  cmd->callback([] {
    fmt::print("cpu: {} threads, features: {}\n", std::thread::hardware_concurrency(),
               cpu_features().describe());
    const GpuProbe probe = probe_gpus();
    if (probe.gpus.empty()) fmt::print("gpu: none ({})\n", probe.notice);
    for (const GpuInfo& gpu : probe.gpus) {
      fmt::print("gpu {}: {} (sm_{}{}), {} SMs, {:.1f} GiB total, {:.1f} GiB free\n", gpu.index,
                 gpu.name, gpu.compute_major, gpu.compute_minor, gpu.multiprocessors,
                 gpu.total_bytes / 1073741824.0, gpu.free_bytes / 1073741824.0);
    }
  });
}

}  // namespace tandem::cli
