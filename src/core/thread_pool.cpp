#include "core/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace tandem {

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
  if (n_threads < 1 || n_threads > 1024) fail("thread count {} is out of range (1..1024)", n_threads);
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stopping_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_range(int index) {
  for (;;) {
    const int64_t begin = job_next_.fetch_add(job_chunk_, std::memory_order_relaxed);
    if (begin >= job_n_) return;
    job_call_(job_fn_, index, begin, std::min(job_n_, begin + job_chunk_));
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly (the next op of a forward pass usually follows within microseconds),
    // then sleep so an idle engine does not burn a core.
    uint64_t now = generation_.load(std::memory_order_acquire);
    if (now == seen) {
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
      for (int i = 0; (now = generation_.load(std::memory_order_acquire)) == seen; ++i) {
        _mm_pause();
        if ((i & 1023) == 1023 && std::chrono::steady_clock::now() > spin_until) {
          sleepers_.fetch_add(1);
          generation_.wait(seen);
          sleepers_.fetch_sub(1);
        }
      }
    }
    seen = now;
    if (stopping_.load()) return;
    run_range(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run(int64_t n, int64_t grain, const void* fn, Call call) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (n_threads_ == 1 || n <= grain) {
    call(fn, 0, 0, n);
    return;
  }
  job_fn_ = fn;
  job_call_ = call;
  job_n_ = n;
  const int64_t target = (n + 4 * n_threads_ - 1) / (4 * n_threads_);  // ~4 chunks per thread
  job_chunk_ = std::max(grain, (target + grain - 1) / grain * grain);
  job_next_.store(0, std::memory_order_relaxed);
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: pairs with the sleepers_ check below
  if (sleepers_.load() > 0) generation_.notify_all();
  run_range(0);
  // Yield now and then: with more threads than cores a worker may need this core.
  for (int i = 1; pending_.load(std::memory_order_acquire) != 0; ++i) {
    _mm_pause();
    if ((i & 4095) == 0) std::this_thread::yield();
  }
}

int default_thread_count() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace tandem
