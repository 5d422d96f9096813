// Sustained memory READ bandwidth of this machine: the ceiling for decode on the CPU, which
// reads every active weight once per token (tok/s <= GB/s / bytes per token). Used by
// `tandem fit` (the roofline) and bench/membw.cpp (the table per thread count).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tandem {

// A buffer far larger than the caches, mapped 2 MiB aligned (advised as huge pages) and
// first-touched by `max_threads` threads so pages spread over NUMA nodes as the readers do.
class ReadBandwidthProbe {
 public:
  // bytes >= 64 MiB (rounded down to 2 MiB); fails when it cannot be mapped.
  ReadBandwidthProbe(size_t bytes, int max_threads);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // GB/s (1e9 bytes/s) of each of `passes` timed passes in which `threads` threads each sum
  // their own slice (after one untimed warm-up pass). 1 <= threads <= max_threads.
  std::vector<double> measure(int threads, int passes) const;

  size_t bytes() const { return bytes_; }
  bool avx2() const { return avx2_; }  // 32-byte loads; otherwise 16-byte (x86-64-v2)

 private:
  std::vector<double> timed_passes(int threads, int passes) const;

  uint64_t* data_ = nullptr;
  size_t bytes_ = 0;
  int max_threads_ = 0;
  bool avx2_ = false;
};

}  // namespace tandem
