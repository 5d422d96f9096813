// The persistent pool: every index runs exactly once, chunks respect the grain, the
// thread index stays in range, and hand-off keeps working across many back-to-back jobs
// (spinning), with far more threads than cores (workers the OS left off the CPU must never
// claim a chunk of a newer job with an older job's parameters), and after the workers
// went to sleep; idle workers do sleep. Then the usable-CPU count over real-looking
// /proc and /sys contents.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "support/test_support.h"

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

// Jobs of changing size and grain back to back, with more threads than this machine has
// cores: a worker descheduled between reading one job and claiming would, with a plain
// counter, run an index range of the next job cut by the old job's chunk size, or call
// the old job's function. Every index of every job exactly once, from that job's function.
TEST(ThreadPool, StaleWorkersNeverTouchANewerJob) {
  for (int threads : {8, 64}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits(4096);
    std::atomic<int> current{-1}, wrong_job{0}, out_of_range{0};
    const int rounds = threads == 8 ? 4000 : 1000;
    for (int round = 0; round < rounds; ++round) {
      const int64_t n = 1 + (round * 7919) % 4000;
      const int64_t grain = 1 + round % 5;
      for (int64_t i = 0; i < n; ++i) hits[static_cast<size_t>(i)].store(0, std::memory_order_relaxed);
      current.store(round);
      pool.parallel_for(n, [&, round, n](int, int64_t begin, int64_t end) {
        if (current.load() != round) wrong_job.fetch_add(1);
        if (begin < 0 || end > n || begin >= end) {
          out_of_range.fetch_add(1);
          return;
        }
        for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
      }, grain);
      current.store(-1);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " threads, job " << round << ", index " << i;
      }
    }
    EXPECT_EQ(wrong_job.load(), 0) << "a chunk ran after its job had returned";
    EXPECT_EQ(out_of_range.load(), 0);
  }
}

// `-t 999` on a small machine: hundreds of threads, many small jobs. Finishes (ctest's
// time-out is the bound) with every index once.
TEST(ThreadPool, HundredsOfThreadsManySmallJobs) {
  ThreadPool pool(256);
  std::atomic<int64_t> total{0};
  int64_t want = 0;
  for (int round = 0; round < 3000; ++round) {
    const int64_t n = 16 + round % 1024;
    pool.parallel_for(n, [&](int, int64_t b, int64_t e) { total.fetch_add(e - b, std::memory_order_relaxed); });
    want += n;
  }
  EXPECT_EQ(total.load(), want);
}

// After sleeping, one job must bring every worker back (the caller wakes one, each woken
// worker the next while chunks remain): each chunk waits inside until all threads of the
// pool are inside at once, which only a full chain of wake-ups allows. (A safety time-out
// keeps a broken chain from hanging the test; it then fails.)
TEST(ThreadPool, OneJobWakesEverySleepingWorker) {
  constexpr int kThreads = 4;
  ThreadPool pool(kThreads);
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // every worker asleep
    std::atomic<int> inside{0}, gave_up{0};
    std::vector<std::atomic<int>> seen(kThreads);
    pool.parallel_for(kThreads * 4, [&](int thread, int64_t, int64_t) {
      if (seen[static_cast<size_t>(thread)].exchange(1) == 0) inside.fetch_add(1);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (inside.load() < kThreads) {
        if (std::chrono::steady_clock::now() > deadline) {
          gave_up.store(1);
          return;
        }
        std::this_thread::yield();
      }
    });
    EXPECT_EQ(gave_up.load(), 0) << "only " << inside.load() << " of " << kThreads << " threads joined the job";
  }
}

// An idle pool leaves the cores to other threads (a GPU's driver, a server's I/O): once
// jobs stop, the workers spin and yield only briefly, then sleep. Measured as the CPU time
// the process uses, minus this thread's, over a window after the pool went idle; workers
// that kept spinning would use about the whole window each (less on a loaded machine,
// which only makes the check easier to pass, never a false failure).
TEST(ThreadPool, IdleWorkersSleep) {
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int round = 0; round < 2000; ++round) {
    pool.parallel_for(256, [&](int, int64_t b, int64_t e) { total.fetch_add(e - b); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double others0 = testing::other_threads_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double window = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double workers = testing::other_threads_cpu_seconds() - others0;
  EXPECT_LT(workers, 0.1 * window) << "idle workers used " << workers << " s of CPU in " << window << " s";
  EXPECT_EQ(total.load(), 2000 * 256);
}

TEST(ThreadPool, RejectsBadThreadCounts) {
  EXPECT_THROW(ThreadPool(0), Error);
  EXPECT_THROW(ThreadPool(100000), Error);
}

TEST(UsableCpus, ParsesKernelCpuLists) {
  EXPECT_EQ(parse_cpu_list("0-3,8,10-11\n"), (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpu_list("5\n"), (std::vector<int>{5}));
  EXPECT_EQ(parse_cpu_list("0,64\n"), (std::vector<int>{0, 64}));
  EXPECT_TRUE(parse_cpu_list("\n").empty());
  for (const char* bad : {"1-", "a", "3-1", "1,,2", "-2", "1-2-3", "0-2000000000"}) EXPECT_THROW(parse_cpu_list(bad), Error) << bad;
}

// Intel numbering: cpuN and cpuN+4 are SMT siblings of one core.
CpuInventory intel_8_threads() {
  CpuInventory inv;
  for (int cpu = 0; cpu < 8; ++cpu) {
    inv.allowed.push_back(cpu);
    inv.siblings.push_back(std::to_string(cpu % 4) + "," + std::to_string(cpu % 4 + 4) + "\n");
  }
  return inv;
}

TEST(UsableCpus, CountsPhysicalCoresOfTheAffinityMask) {
  EXPECT_EQ(usable_cpus(intel_8_threads()), 4);
  // AMD numbering: siblings adjacent ("0-1").
  CpuInventory amd;
  for (int cpu = 0; cpu < 16; ++cpu) {
    amd.allowed.push_back(cpu);
    amd.siblings.push_back(std::to_string(cpu / 2 * 2) + "-" + std::to_string(cpu / 2 * 2 + 1) + "\n");
  }
  EXPECT_EQ(usable_cpus(amd), 8);
  // taskset -c 0,1 on the Intel machine: two cores; -c 0,4: one core's two threads.
  CpuInventory two_cores = intel_8_threads(), one_core = intel_8_threads();
  two_cores.allowed = {0, 1};
  two_cores.siblings = {"0,4\n", "1,5\n"};
  EXPECT_EQ(usable_cpus(two_cores), 2);
  one_core.allowed = {0, 4};
  one_core.siblings = {"0,4\n", "0,4\n"};
  EXPECT_EQ(usable_cpus(one_core), 1);
  // No SMT (this kind of VM: each CPU its own sibling list), or no topology files.
  CpuInventory vm;
  vm.allowed = {0, 1};
  vm.siblings = {"0\n", "1\n"};
  EXPECT_EQ(usable_cpus(vm), 2);
  vm.siblings = {"", ""};
  EXPECT_EQ(usable_cpus(vm), 2);
  vm.siblings = {"garbage", "7\n"};  // unreadable or not naming the CPU itself: a core of its own
  EXPECT_EQ(usable_cpus(vm), 2);
  EXPECT_EQ(usable_cpus(CpuInventory{}), 1);
}

TEST(UsableCpus, CgroupQuotasCapTheCountRoundedUp) {
  CpuInventory inv = intel_8_threads();  // 4 cores
  inv.cgroup_cpu_max = {"max 100000\n"};
  EXPECT_EQ(usable_cpus(inv), 4);
  inv.cgroup_cpu_max = {"150000 100000\n"};  // docker --cpus=1.5
  EXPECT_EQ(usable_cpus(inv), 2);
  inv.cgroup_cpu_max = {"50000 100000\n"};
  EXPECT_EQ(usable_cpus(inv), 1);
  inv.cgroup_cpu_max = {"max 100000\n", "300000 100000\n", "200000 100000\n"};  // the tightest ancestor
  EXPECT_EQ(usable_cpus(inv), 2);
  inv.cgroup_cpu_max = {"1600000 100000\n"};  // more than the cores: the cores
  EXPECT_EQ(usable_cpus(inv), 4);
  inv.cgroup_cpu_max.clear();
  inv.cfs_quota_period = {{"-1\n", "100000\n"}};  // cgroup v1, no quota
  EXPECT_EQ(usable_cpus(inv), 4);
  inv.cfs_quota_period = {{"250000\n", "100000\n"}};
  EXPECT_EQ(usable_cpus(inv), 3);
  inv.cfs_quota_period = {{"250000\n", ""}};  // unreadable period: ignored
  EXPECT_EQ(usable_cpus(inv), 4);
}

TEST(UsableCpus, ThisMachine) {
  const CpuInventory inv = read_cpu_inventory();
  ASSERT_FALSE(inv.allowed.empty());
  EXPECT_EQ(inv.siblings.size(), inv.allowed.size());
  const int n = usable_cpus(inv);
  EXPECT_GE(n, 1);
  EXPECT_LE(n, static_cast<int>(inv.allowed.size()));
  EXPECT_EQ(default_thread_count(), n);
}

}  // namespace
}  // namespace tandem
