// One persistent pool of worker threads for all CPU work. The calling thread takes part,
// so `-t N` means N threads in total. Work is handed out as contiguous index ranges;
// nothing is allocated per call.
//
// A decode step runs hundreds of small ops, and waking threads through a mutex and
// condition variable for each one costs more than many of the ops themselves, so idle
// threads first spin on the job word. They must not keep spinning when the pool has more
// threads than the machine has cores, or when another thread (the one that drives a GPU, a
// server's I/O) needs the core: every wait is bounded — spin, then yield, then sleep on a
// futex — and a job is complete when its chunks are, whichever threads ran them, so a
// thread that the OS left off the CPU holds nobody up unless it holds a chunk.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace tandem {

class ThreadPool {
 public:
  // n_threads above default_thread_count() is honoured, with a one-line warning on stderr
  // (once per process and count).
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index, begin, end) over chunks covering [0, n) and returns when all
  // are done. Chunks are multiples of `grain` (except the last), about four per thread,
  // and are claimed by whichever thread is free, so a thread slowed by the OS or by its
  // share of the work does not hold the others up. A thread may run several chunks.
  // fn must not throw (check inputs before the call). Not reentrant: one caller at a time.
  template <typename Fn>
  void parallel_for(int64_t n, const Fn& fn, int64_t grain = 1) {
    run(n, grain, &fn, [](const void* f, int thread, int64_t begin, int64_t end) {
      (*static_cast<const Fn*>(f))(thread, begin, end);
    });
  }

 private:
  using Call = void (*)(const void*, int, int64_t, int64_t);
  void run(int64_t n, int64_t grain, const void* fn, Call call);
  void worker_loop(int index);
  // Claims and runs chunks of the current job until none is left.
  void run_chunks(int index);
  void wake_one_sleeper();

  int n_threads_;
  // Whether waits start with a spin: not when the pool has more threads than the process
  // has cores, where a waiting thread's core is better handed at once (sched_yield) to a
  // pool thread that holds a chunk and waits for a core.
  bool spin_;
  std::vector<std::thread> workers_;
  // The job word: generation (high 32 bits) | chunk count (16) | next unclaimed chunk (16).
  // A chunk is claimed by a compare-exchange on the whole word, so a worker that read the
  // word of an older job can never claim a chunk of a newer one; the job's parameters
  // below are read only after a successful claim (and cannot change until that chunk is
  // done, since the caller waits for every chunk).
  alignas(64) std::atomic<uint64_t> job_{0};
  // Chunks of the current job finished; the job is done when this reaches its count.
  alignas(64) std::atomic<uint32_t> done_{0};
  std::atomic<uint32_t> caller_sleeping_{0};  // the caller is (about to be) in futex_wait(done_)
  alignas(64) std::atomic<uint32_t> wake_{0};  // futex word idle workers sleep on
  std::atomic<int> sleepers_{0};               // workers in (or about to enter) futex_wait(wake_)
  std::atomic<bool> stopping_{false};
  // The current job, written by the caller before job_ is published.
  alignas(64) const void* job_fn_ = nullptr;
  Call job_call_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 1;
};

// CPUs this process can use, as the pure function of what the system reports:
// `allowed` — CPU ids of the affinity mask; `cgroup_cpu_max` — cgroup v2 `cpu.max` texts
// ("max 100000", "150000 100000") of the process's cgroup and its ancestors;
// `cfs_quota_period` — cgroup v1 (`cpu.cfs_quota_us`, `cpu.cfs_period_us`) text pairs;
// `siblings` — for each allowed CPU (same order), its SMT siblings list from
// /sys/devices/system/cpu/cpuN/topology (e.g. "0,32" or "4-5"), empty when unknown.
// Result: physical cores among the allowed CPUs (siblings count once), capped by the
// tightest CPU quota (rounded up), at least 1.
struct CpuInventory {
  std::vector<int> allowed;
  std::vector<std::string> cgroup_cpu_max;
  std::vector<std::pair<std::string, std::string>> cfs_quota_period;
  std::vector<std::string> siblings;
};
int usable_cpus(const CpuInventory& inventory);
// A kernel CPU list ("0-3,8,10-11\n") as ids; throws on malformed text.
std::vector<int> parse_cpu_list(std::string_view text);
// What this process sees (sched_getaffinity, /proc/self/cgroup, /sys/fs/cgroup, topology).
CpuInventory read_cpu_inventory();

// usable_cpus(read_cpu_inventory()), read once per process: the default thread count.
int default_thread_count();

}  // namespace tandem
