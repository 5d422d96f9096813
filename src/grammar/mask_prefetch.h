// Computes a TokenConstraint's allowed-token mask on a thread of its own while the forward
// pass that produces the next logits runs (issue 22: the mask off the critical path where
// the schedule allows: a GPU computing the logits, or a CPU pool that leaves a core idle).
//
// Decoding asks for the full mask only when the sampler's choice is rejected, and masks are
// cached by grammar state; so the prefetch makes that rare step cost a cache lookup. The
// constraint is not thread-safe: between start() and wait() nobody else may touch it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>

#include "grammar/token_constraint.h"

namespace tandem::grammar {

class MaskPrefetch {
 public:
  explicit MaskPrefetch(TokenConstraint& constraint);
  ~MaskPrefetch();
  MaskPrefetch(const MaskPrefetch&) = delete;
  MaskPrefetch& operator=(const MaskPrefetch&) = delete;

  // Begins computing the mask of the constraint's current state (no-op if one is running).
  void start();
  // Returns once no computation is running; rethrows the error one ended with (a grammar
  // too ambiguous to match, say).
  void wait();
  // Masks computed in the background so far (for tests and stats).
  uint64_t computed() const { return computed_.load(); }

 private:
  void loop();

  TokenConstraint& constraint_;
  std::mutex m_;
  std::condition_variable cv_;
  bool pending_ = false, stop_ = false;
  std::exception_ptr error_;
  std::atomic<uint64_t> computed_{0};
  std::thread thread_;  // last: started once the fields above exist
};

}  // namespace tandem::grammar
