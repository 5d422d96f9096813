// Sustained memory READ bandwidth of this machine with 1..N threads: the ceiling for
// decode, which reads every active weight once per token (tok/s <= GB/s / bytes per token).
// A buffer far larger than the caches is touched once, then each pass has every thread
// sum its own slice with 32-byte loads; best and mean of the passes per thread count.
//   tandem_membw [--size-mib 1024] [--passes 10] [-t 1,2,4] [--json]
#include <fmt/format.h>
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/cpu_features.h"
#include "core/error.h"

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Sums n 64-bit words (n a multiple of 16). Four independent accumulators keep the adds
// off the critical path; the loads are all the work.
__attribute__((target("avx2"))) uint64_t sum_avx2(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

// The baseline (x86-64-v2) path: 16-byte loads.
uint64_t sum_sse2(const uint64_t* p, size_t n) {
  __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 8) {
    a0 = _mm_add_epi64(a0, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i)));
    a1 = _mm_add_epi64(a1, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 2)));
    a2 = _mm_add_epi64(a2, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 4)));
    a3 = _mm_add_epi64(a3, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 6)));
  }
  const __m128i s = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
  alignas(16) uint64_t lanes[2];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes), s);
  return lanes[0] + lanes[1];
}

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

// Thread t owns words [t*n/T, (t+1)*n/T), rounded to 16-word (128-byte) blocks.
std::pair<size_t, size_t> slice(size_t n_words, int t, int threads) {
  const size_t blocks = n_words / 16;
  return {blocks * t / threads * 16, blocks * (t + 1) / threads * 16};
}

Result measure(const uint64_t* data, size_t n_words, int threads, int passes, bool avx2) {
  Result r;
  r.threads = threads;
  std::barrier sync(threads + 1);  // the workers plus this thread, which only keeps time
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const auto [begin, end] = slice(n_words, t, threads);
      for (int pass = 0; pass < passes; ++pass) {
        sync.arrive_and_wait();
        sums[static_cast<size_t>(t)] = avx2 ? sum_avx2(data + begin, end - begin) : sum_sse2(data + begin, end - begin);
        sync.arrive_and_wait();
      }
    });
  }
  const size_t words_read = slice(n_words, threads - 1, threads).second;
  for (int pass = 0; pass < passes; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t total = 0;
    for (uint64_t x : sums) total += x;
    // Every word is 1, so the sum checks that every word was read exactly once.
    if (total != words_read) tandem::fail("checksum {} != {} words", total, words_read);
    r.gbs.push_back(static_cast<double>(words_read) * 8 / s / 1e9);
  }
  for (std::thread& w : workers) w.join();
  return r;
}

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
  const bool avx2 = tandem::cpu_features().avx2;

  // 2 MiB aligned and advised as huge pages: fewer TLB misses, as for mmapped weights on
  // a THP system (and no effect where THP is off).
  const size_t bytes = (static_cast<size_t>(size_mib) << 20) / kHugePage * kHugePage;
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) tandem::fail("cannot map {} MiB", size_mib);
  madvise(mem, bytes, MADV_HUGEPAGE);
  auto* data = static_cast<uint64_t*>(mem);
  const size_t n_words = bytes / 8;
  {
    // First touch by as many threads as will read, so pages spread over NUMA nodes alike.
    const int writers = *std::max_element(threads.begin(), threads.end());
    std::vector<std::thread> fill;
    for (int t = 0; t < writers; ++t) {
      fill.emplace_back([&, t] {
        const auto [begin, end] = slice(n_words, t, writers);
        std::fill(data + begin, data + end, uint64_t{1});
      });
    }
    for (std::thread& f : fill) f.join();
  }

  std::vector<Result> results;
  for (int t : threads) {
    measure(data, n_words, t, 1, avx2);  // warm-up pass: threads started, caches and TLB settled
    results.push_back(measure(data, n_words, t, passes, avx2));
  }
  munmap(mem, bytes);

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
