#include "backend/cuda/graph_segments.h"

namespace tandem::cuda {

void GraphSegments::begin_pass(int64_t tokens) {
  tokens_ = tokens;
  segment_ = 0;
  eligible_ = enabled_ && tokens > 0 && tokens <= kMaxTokens;
}

bool GraphSegments::should_capture() const {
  if (!eligible_ || capturing_ || !enabled_) return false;
  const auto it = eager_runs_.find(key());
  return it != eager_runs_.end() && it->second > 0;
}

GraphSegments::Ended GraphSegments::end_segment() {
  const Ended ended{capturing_, key()};
  if (!capturing_ && eligible_) ++eager_runs_[key()];
  capturing_ = false;
  ++segment_;
  return ended;
}

}  // namespace tandem::cuda
