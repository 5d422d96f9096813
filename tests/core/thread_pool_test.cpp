// The persistent pool: every index runs exactly once, chunks respect the grain, the
// thread index stays in range, and hand-off keeps working across many back-to-back jobs
// (spinning) and after the workers went to sleep (idle > 1 ms).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"

namespace tandem {
namespace {

void check_cover(ThreadPool& pool, int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<int> bad_thread{0}, bad_chunk{0};
  pool.parallel_for(n, [&](int thread, int64_t begin, int64_t end) {
    if (thread < 0 || thread >= pool.size()) bad_thread.fetch_add(1);
    if (begin % grain != 0 || (end != n && (end - begin) % grain != 0) || begin >= end) bad_chunk.fetch_add(1);
    for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  }, grain);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n=" << n << " grain=" << grain << " i=" << i;
  EXPECT_EQ(bad_thread.load(), 0);
  EXPECT_EQ(bad_chunk.load(), 0) << "n=" << n << " grain=" << grain;
}

TEST(ThreadPool, EveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 16, 17, 100, 896, 4865}) {
      for (int64_t grain : {1, 4, 16, 1000}) check_cover(pool, n, grain);
    }
  }
}

TEST(ThreadPool, ManyBackToBackJobsAndWakeAfterSleep) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int round = 0; round < 20000; ++round) {
    pool.parallel_for(64, [&](int, int64_t b, int64_t e) { total.fetch_add(e - b); });
  }
  EXPECT_EQ(total.load(), 20000 * 64);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers are asleep now
  std::atomic<int> used_worker{0};
  for (int round = 0; round < 50; ++round) {
    pool.parallel_for(1000, [&](int thread, int64_t, int64_t) {
      if (thread != 0) used_worker.store(1);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    });
  }
  EXPECT_EQ(used_worker.load(), 1) << "the worker never took a chunk after waking";
}

TEST(ThreadPool, RejectsBadThreadCounts) {
  EXPECT_THROW(ThreadPool(0), Error);
  EXPECT_THROW(ThreadPool(100000), Error);
}

}  // namespace
}  // namespace tandem
