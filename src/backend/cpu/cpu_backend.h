// The CPU implementation of the block interface (backend/backend.h) over the CPU op set:
// host memory, the OpContext's thread pool, and per-block scratch sized once by reserve_*.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"

namespace tandem::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(OpContext& ctx) : ctx_(ctx) {}
  OpContext& context() { return ctx_; }

  Device device() const override { return Device::Cpu; }
  Memory allocate(size_t bytes) override;
  Memory allocate_host(size_t bytes) override { return allocate(bytes); }
  void zero(void* dst, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void read_weight_rows(const Tensor& w, int64_t row0, int64_t n_rows, void* dst) override {
    ctx_.read_rows(w, row0, n_rows, static_cast<uint8_t*>(dst));
  }
  StoredRowsUnpack* read_stored_rows(const Tensor& w, int64_t row0, int64_t n_rows, void* dst) override {
    return ctx_.read_stored_rows(w, row0, n_rows, static_cast<uint8_t*>(dst));
  }
  StoredRowsUnpack* stored_rows_layout(const Tensor& w) override { return ctx_.stored_rows_unpack(w); }

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
  void linear(const Tensor& w, const float* x, int64_t rows, float* out) override;
  void logits(const std::vector<float>& norm, float eps, const Tensor& head, const float* x, int64_t rows, int64_t D,
              float* scratch, float* logits) override;
  // Reads only the subset's rows of the head (views of its rows, interleaved or not), one
  // quantization of each row's input for all of them, in one parallel pass.
  void logits_subset(const std::vector<float>& norm, float eps, const Tensor& head, const float* x, int64_t rows,
                     int64_t D, float* scratch, float* logits, std::span<const RowRange> subset) override;

  // The weight as the CPU runs it (OpContext::prepared: interleaved copies are kept by the
  // context, so every session on it shares them).
  const Tensor& prepared(const Tensor& w) { return ctx_.prepared(w); }

 private:
  // fn(begin, end) over rows [0, rows) of row_elems elements each: split across the pool
  // when there are enough elements to pay for the hand-off (a prompt's norms, gates and
  // activations; a decode step's stay on the calling thread).
  template <class Fn>
  void for_rows(int64_t rows, int64_t row_elems, const Fn& fn);

  void swiglu_ffn(const Tensor& gate, const Tensor& up, const Tensor& down, const float* m, int64_t T, float* out);
  void moe_grouped(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen, const float* weight,
                   float* out);
  void moe_per_expert(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen, const float* weight,
                      float* out);

  OpContext& ctx_;
  // Attention: projections and per-token positions.
  struct {
    std::vector<float> qg, q, k, v, out;
    std::vector<int32_t> positions;
  } attn_;
  // DeltaNet: P/conv [T][C], z/o/y [T][C_v], q/k [T][n_k*d_k], v [T][C_v], gates [T][n_v].
  struct {
    std::vector<float> P, conv, z, q, k, v, o, y, b, alpha, g, beta;
  } delta_;
  // FFN: SwiGLU intermediates, router logits; the fused MoE path's token slots ordered by
  // expert, their quantized inputs, the experts' intermediate rows and outputs.
  struct {
    std::vector<float> a, b, router_logits, expert_in, expert_out, expert_weights;
    std::vector<int32_t> expert_tokens, expert_first, slot_token, active_experts;
    std::vector<float> slot_weight, slot_gate, slot_up, slot_out;
    std::vector<uint8_t> act_in, slot_act, slot_down_act;
  } ffn_;
  std::vector<GroupedMatmul> head_runs_;  // logits_subset: one matmul per run of rows (reused)
};

}  // namespace tandem::cpu
