#include "grammar/mask_prefetch.h"

namespace tandem::grammar {

MaskPrefetch::MaskPrefetch(TokenConstraint& constraint) : constraint_(constraint), thread_([this] { loop(); }) {}

MaskPrefetch::~MaskPrefetch() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void MaskPrefetch::start() {
  {
    std::lock_guard<std::mutex> lock(m_);
    if (pending_) return;
    pending_ = true;
  }
  cv_.notify_all();
}

void MaskPrefetch::wait() {
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [&] { return !pending_; });
  if (error_) {
    std::exception_ptr e = std::move(error_);
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void MaskPrefetch::loop() {
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    cv_.wait(lock, [&] { return pending_ || stop_; });
    if (stop_) return;
    lock.unlock();
    std::exception_ptr error;
    try {
      constraint_.allowed();  // cached by state inside the constraint
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    error_ = error;
    ++computed_;
    pending_ = false;
    cv_.notify_all();
  }
}

}  // namespace tandem::grammar
