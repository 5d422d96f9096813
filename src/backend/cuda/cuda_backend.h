// The CUDA implementation of the block interface (backend/backend.h): each block is a
// short sequence of kernel launches on the context's compute stream (matmul.h, ops.h,
// delta_net.h), with no host synchronisation inside a forward pass except where the
// interface hands results to the host (copy_to_host, logits).
//
// Weights: a block receives the host views the model loaded (mmap'd GGUF bytes, f32
// vectors). The first time this backend runs a weight it uploads it and keeps the device
// copy, keyed by the host address, so exactly the weights of the layers a placement gives
// the GPU end up in VRAM (the planner, not this class, keeps that within the budget). A
// warm-up pass therefore pays the uploads; later passes only look the copies up.
//
// Scratch: one grow-only device buffer per purpose, sized by reserve_* before the first
// pass (and grown at most once more if a later call is larger), so the steady state never
// allocates.
//
// Decode passes run as CUDA graphs (graph_segments.h): the work between two host sync
// points is captured and replayed as one launch from a key's second pass on.
// TANDEM_CUDA_GRAPHS=0 (or set_graphs(false)) runs every kernel as its own launch.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/expert_groups.h"
#include "backend/cuda/graph_segments.h"
#include "backend/cuda/matmul.h"

namespace tandem::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device = 0);
  ~CudaBackend() override;
  CudaContext& context() { return ctx_; }
  // Bytes of weights uploaded so far.
  uint64_t weight_bytes() const { return weight_bytes_; }
  // Decode graphs on or off (on unless TANDEM_CUDA_GRAPHS=0); graph launches so far.
  void set_graphs(bool on);
  uint64_t graph_launches() const { return graph_launches_; }
  // Prompt MoE: experts with at least this many tokens in a micro-batch run as one GEMM
  // each, the rest as 8-token mat-vec chunks (expert_groups.h); tests lower it to run both.
  void set_expert_gemm_min_tokens(int64_t n) { expert_gemm_min_tokens_ = n; }
  // The staging chunk of expert streaming (tests: small chunks so a slab takes several);
  // before the first streamed call only.
  void set_stream_chunk_bytes(size_t bytes);

  Device device() const override { return Device::Cuda; }
  Memory allocate(size_t bytes) override;
  Memory allocate_host(size_t bytes) override;
  void zero(void* dst, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host_queued(void* dst, const void* src, size_t bytes) override;
  void begin_pass(int64_t tokens) override;
  void flush() override;
  void finish() override;

  void reserve_attention(int64_t max_tokens, const AttentionShape& shape, bool gated) override;
  void reserve_delta_net(int64_t max_tokens, const DeltaNetShape& shape, int64_t conv_kernel) override;
  void reserve_ffn(int64_t max_tokens, int64_t n_embd, const FfnWeights& w) override;

  void embed(const Tensor& table, std::span<const int32_t> tokens, float* x) override;
  void rms_norm(const float* x, const std::vector<float>& w, int64_t rows, int64_t n, float eps, float* out) override;
  void add(float* x, const float* y, int64_t n) override;
  void attention(const AttentionWeights& w, const AttentionShape& shape, const float* a,
                 std::span<const AttentionSequence> seqs, float* out) override;
  void delta_net(const DeltaNetWeights& w, const DeltaNetShape& shape, const float* a,
                 std::span<const DeltaNetSequence> seqs, float* out) override;
  void delta_net_rollback(const DeltaNetShape& shape, int64_t conv_kernel, const DeltaNetRollback& r) override;
  void dense_ffn(const FfnWeights& w, const float* m, int64_t T, float* out) override;
  void moe_route(const FfnWeights& w, const float* m, int64_t T, int32_t* chosen, float* weight) override;
  void moe_experts(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen, const float* weight,
                   float* out) override;
  void shared_expert(const FfnWeights& w, const float* m, int64_t T, float* out) override;
  // Expert streaming (model/expert_streaming.h): each weight matrix's experts move in slabs
  // (backend.h kExpertSlabBytes) into two device slab buffers in turn; the holder (the CPU)
  // copies 16 MiB chunks of its stored rows into two page-locked staging buffers in turn
  // while the copy stream empties the other. Rows the holder keeps interleaved cross as
  // they are and are rearranged here (row_unshuffle.h), or, for a layout that has no bit
  // map, are unpacked by the holder first. A slab's experts run (prompt_experts_matrix) as
  // soon as it lands, while the next one crosses; slabs no token chose are not moved.
  bool can_stream_experts() const override { return true; }
  void reserve_expert_streaming(uint64_t bytes) override;
  void moe_experts_streamed(const FfnWeights& w, Backend& holder, const float* m, int64_t T, const int32_t* chosen,
                            const float* weight, float* out) override;
  uint64_t streamed_bytes() const { return streamed_bytes_; }
  void logits(const std::vector<float>& norm, float eps, const Tensor& head, const float* x, int64_t rows, int64_t D,
              float* scratch, float* logits) override;

 private:
  // Grow-only scratch, one buffer per purpose.
  enum Slot : size_t {
    kQ, kQG, kK, kV, kAttnOut, kPositions, kAttnScratch, kMatmulScratch, kTokens,
    kP, kConv, kZ, kDq, kDk, kDv, kDo, kB, kAlpha, kDeltaScratch,
    kFfnA, kFfnB, kRouterLogits, kSlotOut, kSlotIn, kSlotOrder, kLogits, kStreamedExperts, kSlotCount
  };
  void* slot(Slot s, size_t bytes);
  template <class T>
  T* slot_n(Slot s, size_t n) { return static_cast<T*>(slot(s, n * sizeof(T))); }

  // Before queueing GPU work: begins capturing when this segment is due for a graph.
  void queue();
  // A point the work queued so far must run before (a host sync, or something a graph
  // cannot hold): ends the segment, launching its graph when it was being captured.
  void sync_point();
  // queue() for a copy to or from host memory `host`, or sync_point() when a graph being
  // captured cannot hold it (pageable memory).
  void queue_host_copy(const void* host);
  // Ends a capture in progress and launches it as this key's graph.
  void launch_captured(uint64_t key);

  // The device copy of a weight (uploaded on first use).
  const Tensor& weight(const Tensor& host);
  // The device copy of a small f32 vector (nullptr for an empty one).
  const float* vec(const std::vector<float>& host);

  // y [T][n_out] = W x, with the matmul scratch this shape needs.
  void matmul(const Tensor& host_w, const float* x, int64_t T, float* y, const float* bias = nullptr);
  void matmul_experts(const Tensor& host_w, const float* x, int64_t n_x_rows, const int32_t* ids, int64_t n_slots,
                      float* y);
  void swiglu_ffn(const Tensor& gate, const Tensor& up, const Tensor& down, const float* m, int64_t T, float* out);

  // Prompt MoE (more than 8 tokens): the slots' rows by expert in groups_ and the buffers
  // (device) of the gathered input xg, gate g, up u and expert outputs y.
  struct PromptExperts {
    float *xg = nullptr, *g = nullptr, *u = nullptr, *y = nullptr;
    const int32_t *slot_row = nullptr, *chunk_expert = nullptr;
    MatmulScratch scratch;
  };
  PromptExperts group_prompt_experts(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen);
  // Whether any slot of the layout chose an expert in [e0, e1).
  bool prompt_experts_chosen(int64_t e0, int64_t e1) const;
  // y rows = W x rows for the layout's experts in [e0, e1): their chunks in one launch, their
  // GEMMs one each. w holds exactly those experts (the whole stack when e0 = 0, e1 = E).
  void prompt_experts_matrix(const Tensor& w, int64_t e0, int64_t e1, const float* x, float* y, const PromptExperts& p);

  CudaContext ctx_;
  std::array<DeviceBuffer, kSlotCount> slots_;
  struct Uploaded {
    DeviceBuffer bytes;
    Tensor view;
  };
  std::unordered_map<const void*, Uploaded> weights_;
  std::unordered_map<const void*, DeviceBuffer> vectors_;
  uint64_t weight_bytes_ = 0;
  std::vector<int32_t> host_positions_, device_positions_;  // this call's; what kPositions holds
  PinnedBuffer positions_staging_;  // the positions' upload source (a graph copies from it)
  GraphSegments graphs_;
  std::unordered_map<uint64_t, cudaGraphExec_t> graph_execs_;
  uint64_t graph_launches_ = 0;
  // Prompt MoE: the router's choices on the host, their layout by expert, its upload.
  std::vector<int32_t> host_ids_, expert_staging_;
  ExpertGroups groups_;
  int64_t expert_gemm_min_tokens_ = kExpertGemmMinTokens;
  // Expert streaming: staging chunks and their "copied" events; per slab buffer, "landed"
  // (copy stream) and "used" (compute stream) events.
  static constexpr size_t kStreamChunkBytes = size_t{16} << 20;
  size_t stream_chunk_bytes_ = kStreamChunkBytes;
  std::array<PinnedBuffer, 2> stream_staging_;
  std::array<cudaEvent_t, 2> staging_free_{}, slab_ready_{}, slab_consumed_{};
  int staging_turn_ = 0, slab_turn_ = 0;
  bool streaming_ready_ = false;  // events and staging made
  uint64_t streamed_bytes_ = 0;
  // Bit maps of the holder's row layouts (by its unpack function), on the device; an entry
  // without buffers: that layout has none (the holder unpacks).
  struct Unshuffle {
    size_t block_bytes = 0;
    DeviceBuffer byte_src, bit_src;
  };
  std::unordered_map<StoredRowsUnpack*, Unshuffle> unshuffles_;
  // The map for rows of w stored by `how`, or null when the holder must unpack them.
  const Unshuffle* unshuffle_for(StoredRowsUnpack* how, const Tensor& w);
};

}  // namespace tandem::cuda
