// What this machine offers the planner: free VRAM of the GPU, RAM, cores, and the
// bandwidths the decode roofline divides by. Every value can be given instead of probed,
// so a plan can be made for another machine ("what will this model do on a 12 GB card").
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "backend/device_info.h"

namespace tandem::plan {

// Values given on the command line; each replaces the probed one.
struct HardwareOverrides {
  std::optional<uint64_t> vram_budget;  // --vram-budget: bytes of VRAM the plan may use
  std::optional<uint64_t> ram;          // --ram: bytes of RAM the plan may use
  std::optional<double> gpu_gbps;       // --gpu-bw: GPU memory read GB/s
  std::optional<double> cpu_gbps;       // --cpu-bw: CPU memory read GB/s (all threads)
};

struct Hardware {
  std::optional<GpuInfo> gpu;  // CUDA0, the GPU tandem plans for; absent without one
  std::string gpu_notice;      // why there is none
  uint64_t ram_total = 0;      // /proc/meminfo MemTotal
  uint64_t ram_available = 0;  // MemAvailable: what can be had without swapping
  int logical_cpus = 0;

  // What the plan uses (an override, else the probe); nullopt when neither is known.
  uint64_t vram_budget = 0;       // 0 without a GPU and without --vram-budget
  uint64_t ram_budget = 0;
  std::optional<double> gpu_gbps;
  std::optional<double> cpu_gbps;
  // Pinned host <-> device copy GB/s, measured only when a GPU exists.
  std::optional<double> host_to_device_gbps;
  std::optional<double> device_to_host_gbps;
  // Where each figure came from, for reports: "measured", "given", "free VRAM" ...
  std::string vram_source, ram_source, gpu_bw_source, cpu_bw_source;
};

// Probes what the overrides leave open. With `measure`, the CPU read bandwidth (about a
// second over a 512 MiB buffer) and, with a GPU, its read and copy bandwidths are measured;
// without it they stay unknown unless given. Never fails for want of a GPU.
Hardware probe_hardware(const HardwareOverrides& overrides, bool measure);

// MemTotal and MemAvailable in bytes from a /proc/meminfo text; fails naming a missing field.
struct MemInfo {
  uint64_t total = 0;
  uint64_t available = 0;
};
MemInfo parse_meminfo(const std::string& text);

// CPU read bandwidth with every logical CPU, best of a few passes (core/read_bandwidth.h).
double measure_cpu_read_gbps();

}  // namespace tandem::plan
