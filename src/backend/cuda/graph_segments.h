// Which GPU work of a forward pass is replayed as a CUDA graph (issues 5 and 6: CUDA graphs
// for decode). A decode step launches a few hundred small kernels; recorded once as a graph
// and replayed, they cost one launch. The pass is cut into segments at every point where
// the host must wait for the GPU (a copy to the host: the hybrid split's crossings, the
// logits) or queue something a graph cannot hold (a copy from pageable memory, a first
// upload, a scratch buffer growing): each segment is its own graph.
//
// This class is the bookkeeping only (no CUDA calls, so it is tested without a device):
// a segment is keyed by (tokens in the pass, its index in the pass). Decode-shaped passes
// (at most kMaxTokens tokens: the mat-vec kernels, no cuBLAS, no host syncs inside a block)
// are eligible; a key runs eagerly the first time (weights are uploaded and scratch is
// sized then), and is captured from its second time on. CudaBackend re-captures the
// segment every time and updates the instantiated graph in place (kernel arguments such
// as the context length change every step), which is still far cheaper than the launches.
#pragma once

#include <cstdint>
#include <unordered_map>

namespace tandem::cuda {

class GraphSegments {
 public:
  static constexpr int64_t kMaxTokens = 8;

  explicit GraphSegments(bool enabled) : enabled_(enabled) {}
  bool enabled() const { return enabled_; }
  // Off for the rest of the session (after a failure, or by the user).
  void disable() { enabled_ = false; }

  // A forward pass of `tokens` tokens starts; segment 0 begins.
  void begin_pass(int64_t tokens);
  // Before GPU work is queued: true when the caller should begin capturing now (an eligible
  // segment seen eagerly before, not already capturing). The caller then calls capturing().
  bool should_capture() const;
  void capturing() { capturing_ = true; }
  bool is_capturing() const { return capturing_; }
  // The segment ends (a host sync point or the end of the pass). Returns whether it was
  // being captured (the caller ends the capture and launches the graph) and its key.
  struct Ended {
    bool captured;
    uint64_t key;
  };
  Ended end_segment();
  // The current segment's key.
  uint64_t key() const { return static_cast<uint64_t>(tokens_) << 32 | static_cast<uint32_t>(segment_); }

 private:
  bool enabled_;
  bool eligible_ = false;
  bool capturing_ = false;
  int64_t tokens_ = 0;
  int64_t segment_ = 0;
  std::unordered_map<uint64_t, int64_t> eager_runs_;
};

}  // namespace tandem::cuda
