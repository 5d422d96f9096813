// Sustained memory READ bandwidth of this machine with 1..N threads: the ceiling for
// decode, which reads every active weight once per token (tok/s <= GB/s / bytes per token).
// A buffer far larger than the caches is touched once, then each pass has every thread
// sum its own slice with 32-byte loads (core/read_bandwidth.h); best and mean of the passes
// per thread count.
//   tandem_membw [--size-mib 1024] [--passes 10] [-t 1,2,4] [--json]
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/read_bandwidth.h"

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      return line.substr(line.find_first_not_of(" \t", line.find(':') + 1));
    }
  }
  return "unknown";
}

struct Result {
  int threads = 0;
  std::vector<double> gbs;  // one per pass
  double best() const { return *std::max_element(gbs.begin(), gbs.end()); }
  double mean() const {
    double s = 0;
    for (double x : gbs) s += x;
    return s / static_cast<double>(gbs.size());
  }
};

void run(int size_mib, int passes, std::vector<int> threads, bool as_json) {
  if (size_mib < 64) tandem::fail("--size-mib must be >= 64 (far larger than the caches), got {}", size_mib);
  if (passes < 1) tandem::fail("--passes must be >= 1, got {}", passes);
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads.empty()) {
    for (int t = 1; t < hw; t *= 2) threads.push_back(t);
    threads.push_back(hw);
  }
  for (int t : threads) {
    if (t < 1) tandem::fail("-t values must be >= 1, got {}", t);
  }
  const tandem::ReadBandwidthProbe probe(static_cast<size_t>(size_mib) << 20,
                                         *std::max_element(threads.begin(), threads.end()));
  std::vector<Result> results;
  for (int t : threads) results.push_back({t, probe.measure(t, passes)});
  const bool avx2 = probe.avx2();
  const size_t bytes = probe.bytes();

  const std::string isa = avx2 ? "avx2" : "sse2";
  if (as_json) {
    nlohmann::ordered_json j;
    j["cpu_info"] = cpu_model();
    j["logical_cpus"] = hw;
    j["isa"] = isa;
    j["buffer_bytes"] = bytes;
    j["passes"] = passes;
    j["results"] = nlohmann::json::array();
    for (const Result& r : results) {
      nlohmann::ordered_json x;
      x["threads"] = r.threads;
      x["best_gbs"] = r.best();
      x["mean_gbs"] = r.mean();
      x["samples_gbs"] = r.gbs;
      j["results"].push_back(x);
    }
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("read bandwidth: {} ({} logical CPUs), {} MiB buffer, {} loads, {} passes (GB = 1e9 bytes)\n\n",
             cpu_model(), hw, bytes >> 20, isa, passes);
  fmt::print("| threads | best GB/s | mean GB/s |\n|--------:|----------:|----------:|\n");
  for (const Result& r : results) fmt::print("| {:>7} | {:>9.2f} | {:>9.2f} |\n", r.threads, r.best(), r.mean());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Sustained memory read bandwidth with 1..N threads (the roofline for decode)"};
  int size_mib = 1024, passes = 10;
  std::vector<int> threads;
  bool as_json = false;
  app.add_option("--size-mib", size_mib, "Buffer size in MiB")->capture_default_str();
  app.add_option("--passes", passes, "Timed passes per thread count")->capture_default_str();
  app.add_option("-t,--threads", threads, "Thread counts (default: 1, 2, 4, ... and all CPUs)")->delimiter(',');
  app.add_flag("--json", as_json, "Print JSON");
  try {
    app.parse(argc, argv);
    run(size_mib, passes, threads, as_json);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
