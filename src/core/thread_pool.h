// One persistent pool of worker threads for all CPU work. The calling thread takes part,
// so `-t N` means N threads in total. Work is handed out as contiguous index ranges;
// nothing is allocated per call.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem {

class ThreadPool {
 public:
  // fn(thread_index, begin, end): process items [begin, end) on thread thread_index.
  using RangeFn = std::function<void(int, int64_t, int64_t)>;

  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Splits [0, n) into one contiguous range per thread (ranges are multiples of `grain`,
  // except the last) and runs them all; returns when every range is done.
  void parallel_for(int64_t n, const RangeFn& fn, int64_t grain = 1);

 private:
  void worker_loop(int index);
  void run_range(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ = 0;  // bumped for every parallel_for
  int pending_ = 0;          // workers still running the current job
  bool stopping_ = false;
  // The current job (valid while pending_ > 0).
  const RangeFn* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_grain_ = 1;
};

// Number of threads to use by default: the physical parallelism the OS reports.
int default_thread_count();

}  // namespace tandem
