// One persistent pool of worker threads for all CPU work. The calling thread takes part,
// so `-t N` means N threads in total. Work is handed out as contiguous index ranges;
// nothing is allocated per call.
//
// Hand-off is a generation counter the workers spin on (then sleep on, after ~1 ms idle),
// and completion a counter the caller spins on: a decode step runs hundreds of small ops,
// and waking threads through a mutex and condition variable for each one costs more
// than many of the ops themselves.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace tandem {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index, begin, end) over chunks covering [0, n) and returns when all
  // are done. Chunks are multiples of `grain` (except the last), about four per thread,
  // and are claimed by whichever thread is free (an atomic counter), so a thread slowed
  // by the OS or by its share of the work does not hold the others up. A thread may run
  // several chunks. fn must not throw (check inputs before the call).
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
  void run_range(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};  // bumped for every job (and to stop)
  std::atomic<int> pending_{0};          // workers still running the current job
  std::atomic<int> sleepers_{0};         // workers blocked in generation_.wait()
  std::atomic<bool> stopping_{false};
  // The current job, written before generation_ is bumped.
  const void* job_fn_ = nullptr;
  Call job_call_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 1;
  std::atomic<int64_t> job_next_{0};  // first index not yet claimed
};

// Number of threads to use by default: the physical parallelism the OS reports.
int default_thread_count();

}  // namespace tandem
