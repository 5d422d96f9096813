#include "core/read_bandwidth.h"

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>

#include "core/cpu_features.h"
#include "core/error.h"

namespace tandem {
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

// Thread t owns words [t*n/T, (t+1)*n/T), rounded to 16-word (128-byte) blocks.
std::pair<size_t, size_t> slice(size_t n_words, int t, int threads) {
  const size_t blocks = n_words / 16;
  return {blocks * t / threads * 16, blocks * (t + 1) / threads * 16};
}

}  // namespace

ReadBandwidthProbe::ReadBandwidthProbe(size_t bytes, int max_threads)
    : bytes_(bytes / kHugePage * kHugePage), max_threads_(max_threads), avx2_(cpu_features().avx2) {
  if (bytes < (size_t{64} << 20)) fail("read bandwidth buffer must be >= 64 MiB (far larger than the caches), got {} bytes", bytes);
  if (max_threads < 1) fail("read bandwidth: thread count must be >= 1, got {}", max_threads);
  // 2 MiB aligned and advised as huge pages: fewer TLB misses, as for mmapped weights on
  // a THP system (and no effect where THP is off).
  void* mem = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) fail("read bandwidth: cannot map {} MiB", bytes_ >> 20);
  madvise(mem, bytes_, MADV_HUGEPAGE);
  data_ = static_cast<uint64_t*>(mem);
  const size_t n_words = bytes_ / 8;
  // First touch by as many threads as will read, so pages spread over NUMA nodes alike.
  std::vector<std::thread> fill;
  for (int t = 0; t < max_threads; ++t) {
    fill.emplace_back([&, t] {
      const auto [begin, end] = slice(n_words, t, max_threads);
      std::fill(data_ + begin, data_ + end, uint64_t{1});
    });
  }
  for (std::thread& f : fill) f.join();
}

ReadBandwidthProbe::~ReadBandwidthProbe() { munmap(data_, bytes_); }

std::vector<double> ReadBandwidthProbe::measure(int threads, int passes) const {
  if (threads < 1 || threads > max_threads_) fail("read bandwidth: threads must be 1..{}, got {}", max_threads_, threads);
  if (passes < 1) fail("read bandwidth: passes must be >= 1, got {}", passes);
  timed_passes(threads, 1);  // warm-up: threads started, caches and TLB settled
  return timed_passes(threads, passes);
}

std::vector<double> ReadBandwidthProbe::timed_passes(int threads, int passes) const {
  const size_t n_words = bytes_ / 8;
  std::barrier sync(threads + 1);  // the workers plus this thread, which only keeps time
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const auto [begin, end] = slice(n_words, t, threads);
      for (int pass = 0; pass < passes; ++pass) {
        sync.arrive_and_wait();
        sums[static_cast<size_t>(t)] = avx2_ ? sum_avx2(data_ + begin, end - begin) : sum_sse2(data_ + begin, end - begin);
        sync.arrive_and_wait();
      }
    });
  }
  const size_t words_read = slice(n_words, threads - 1, threads).second;
  std::vector<double> gbps;
  std::optional<uint64_t> bad_sum;  // reported once the workers are joined
  for (int pass = 0; pass < passes; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t total = 0;
    for (uint64_t x : sums) total += x;
    // Every word is 1, so the sum checks that every word was read exactly once.
    if (total != words_read) bad_sum = total;
    gbps.push_back(static_cast<double>(words_read) * 8 / s / 1e9);
  }
  for (std::thread& w : workers) w.join();
  if (bad_sum) fail("read bandwidth: checksum {} != {} words", *bad_sum, words_read);
  return gbps;
}

}  // namespace tandem
