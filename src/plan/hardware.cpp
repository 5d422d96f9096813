#include "plan/hardware.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/read_bandwidth.h"

namespace tandem::plan {

MemInfo parse_meminfo(const std::string& text) {
  MemInfo info;
  bool have_total = false, have_available = false;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string key, unit;
    uint64_t value = 0;
    if (!(fields >> key >> value)) continue;
    fields >> unit;
    const uint64_t bytes = unit == "kB" ? value * 1024 : value;
    if (key == "MemTotal:") info.total = bytes, have_total = true;
    if (key == "MemAvailable:") info.available = bytes, have_available = true;
  }
  if (!have_total || !have_available) {
    fail("/proc/meminfo: no {} line (give --ram)", have_total ? "MemAvailable" : "MemTotal");
  }
  return info;
}

double measure_cpu_read_gbps() {
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const ReadBandwidthProbe probe(size_t{512} << 20, threads);
  const std::vector<double> passes = probe.measure(threads, 3);
  return *std::max_element(passes.begin(), passes.end());
}

Hardware probe_hardware(const HardwareOverrides& o, bool measure) {
  Hardware hw;
  hw.logical_cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const GpuProbe gpus = probe_gpus();
  if (!gpus.gpus.empty()) hw.gpu = gpus.gpus.front();
  hw.gpu_notice = gpus.gpus.empty() ? gpus.notice : "";

  // RAM: only read /proc/meminfo when --ram leaves it open (a plan for another machine
  // must not depend on this one).
  if (o.ram) {
    hw.ram_budget = *o.ram, hw.ram_source = "given";
  } else {
    std::ifstream in("/proc/meminfo");
    if (!in) fail("cannot read /proc/meminfo (give --ram)");
    std::stringstream text;
    text << in.rdbuf();
    const MemInfo mem = parse_meminfo(text.str());
    hw.ram_total = mem.total, hw.ram_available = mem.available;
    hw.ram_budget = mem.available, hw.ram_source = "MemAvailable";
  }

  if (o.vram_budget) {
    hw.vram_budget = *o.vram_budget, hw.vram_source = "given";
  } else if (hw.gpu) {
    hw.vram_budget = hw.gpu->free_bytes, hw.vram_source = "free VRAM of CUDA0";
  } else {
    hw.vram_budget = 0, hw.vram_source = "no GPU";
  }

  if (o.cpu_gbps) {
    hw.cpu_gbps = *o.cpu_gbps, hw.cpu_bw_source = "given";
  } else if (measure) {
    hw.cpu_gbps = measure_cpu_read_gbps(), hw.cpu_bw_source = "measured";
  }
  if (o.gpu_gbps) hw.gpu_gbps = *o.gpu_gbps, hw.gpu_bw_source = "given";
  if (hw.gpu && measure) {
    const GpuBandwidth bw = measure_gpu_bandwidth(hw.gpu->index);
    if (!hw.gpu_gbps) hw.gpu_gbps = bw.device_read_gbps, hw.gpu_bw_source = "measured";
    hw.host_to_device_gbps = bw.host_to_device_gbps;
    hw.device_to_host_gbps = bw.device_to_host_gbps;
  }
  return hw;
}

}  // namespace tandem::plan
