#include "backend/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/delta_net.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/row_unshuffle.h"
#include "core/error.h"

namespace tandem::cuda {
namespace {

size_t floats(int64_t n) { return static_cast<size_t>(n) * sizeof(float); }

// The cache types the CUDA attention and KV writes support (ops.h).
void check_cache(const KvView& v, const char* which) {
  if (v.type != DType::F32 && v.type != DType::F16 && v.type != DType::Q8_0 && v.type != DType::Q4_0) {
    fail("CUDA attention: {} cache type {} is not supported on the GPU (use f32, f16, q8_0 or q4_0)", which,
         dtype_info(v.type).name);
  }
}

}  // namespace

namespace {

bool graphs_wanted() {
  const char* env = std::getenv("TANDEM_CUDA_GRAPHS");
  return env == nullptr || std::string_view(env) != "0";
}

// Whether the GPU can copy from this host memory by DMA (page-locked or registered): only
// such a copy can be part of a graph.
bool page_locked(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeHost;
}

}  // namespace

CudaBackend::CudaBackend(int device) : ctx_(device), graphs_(graphs_wanted()) {}

CudaBackend::~CudaBackend() {
  if (graphs_.is_capturing()) {
    cudaGraph_t abandoned = nullptr;
    if (cudaStreamEndCapture(ctx_.stream(), &abandoned) == cudaSuccess && abandoned != nullptr) {
      cudaGraphDestroy(abandoned);
    }
    cudaGetLastError();
  }
  cudaStreamSynchronize(ctx_.stream());
  cudaStreamSynchronize(ctx_.copy_stream());
  for (auto& [key, exec] : graph_execs_) cudaGraphExecDestroy(exec);
  for (const auto* events : {&staging_free_, &slab_ready_, &slab_consumed_}) {
    for (cudaEvent_t e : *events) {
      if (e != nullptr) cudaEventDestroy(e);
    }
  }
}

void CudaBackend::set_graphs(bool on) {
  sync_point();
  graphs_ = GraphSegments(on);
}

void CudaBackend::begin_pass(int64_t tokens) {
  sync_point();
  graphs_.begin_pass(tokens);
}

void CudaBackend::flush() { sync_point(); }

void CudaBackend::finish() {
  sync_point();
  ctx_.synchronize();
}

void CudaBackend::queue() {
  if (!graphs_.should_capture()) return;
  TANDEM_CUDA_CHECK(cudaStreamBeginCapture(ctx_.stream(), cudaStreamCaptureModeThreadLocal));
  graphs_.capturing();
}

void CudaBackend::sync_point() {
  const GraphSegments::Ended ended = graphs_.end_segment();
  if (ended.captured) launch_captured(ended.key);
}

void CudaBackend::launch_captured(uint64_t key) {
  cudaGraph_t graph = nullptr;
  const cudaError_t captured = cudaStreamEndCapture(ctx_.stream(), &graph);
  if (captured != cudaSuccess || graph == nullptr) {
    // The recorded work never ran and cannot be replayed: a bug in what was queued (every
    // call a graph cannot hold ends the segment first), reported, never silently skipped.
    cudaGetLastError();
    graphs_.disable();
    fail("CUDA graph capture of a decode segment failed ({}); graphs are now off for this session. "
         "Please report this; TANDEM_CUDA_GRAPHS=0 avoids it",
         cudaGetErrorString(captured));
  }
  size_t nodes = 0;
  if (cudaGraphGetNodes(graph, nullptr, &nodes) == cudaSuccess && nodes == 0) {
    cudaGraphDestroy(graph);  // nothing was queued after all
    return;
  }
  cudaGetLastError();
  cudaGraphExec_t& exec = graph_execs_[key];
  if (exec != nullptr) {
    // Same kernels with new arguments (positions, context length): update in place; a
    // changed shape (another attention split, say) instantiates afresh.
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(exec, graph, &info) != cudaSuccess) {
      cudaGetLastError();
      cudaGraphExecDestroy(exec);
      exec = nullptr;
    }
  }
  if (exec == nullptr) {
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    if (made != cudaSuccess) {
      cudaGraphDestroy(graph);
      graph_execs_.erase(key);
      fail_cuda(made, "cudaGraphInstantiate(decode segment)", __FILE__, __LINE__);
    }
  }
  cudaGraphDestroy(graph);
  TANDEM_CUDA_CHECK(cudaGraphLaunch(exec, ctx_.stream()));
  ++graph_launches_;
}

Memory CudaBackend::allocate(size_t bytes) {
  DeviceBuffer b(bytes);
  if (bytes != 0) TANDEM_CUDA_CHECK(cudaMemsetAsync(b.data(), 0, bytes, ctx_.stream()));
  return b;
}

Memory CudaBackend::allocate_host(size_t bytes) {
  PinnedBuffer b(bytes);
  if (bytes != 0) std::memset(b.data(), 0, bytes);
  return b;
}

void CudaBackend::zero(void* dst, size_t bytes) {
  queue();
  TANDEM_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, ctx_.stream()));
}

void CudaBackend::queue_host_copy(const void* host) {
  // A graph holds only copies to or from page-locked memory (the workspace's crossings
  // are): any other ends the segment being captured.
  if (!graphs_.enabled() || page_locked(host)) {
    queue();
  } else {
    sync_point();
  }
}

void CudaBackend::copy_from_host(void* dst, const void* src, size_t bytes) {
  // On the compute stream, so the kernels that read dst wait for it; from pageable memory
  // the call returns once src has been staged, so the caller may reuse it.
  queue_host_copy(src);
  TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_.stream()));
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  sync_point();
  TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream()));
  TANDEM_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
}

void CudaBackend::copy_to_host_queued(void* dst, const void* src, size_t bytes) {
  queue_host_copy(dst);
  TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream()));
}

void* CudaBackend::slot(Slot s, size_t bytes) {
  DeviceBuffer& b = slots_[s];
  if (b.bytes() < bytes) {
    // Grows at set-up (reserve_*) or on the first pass of a larger shape; waiting for the
    // stream first keeps queued kernels from reading a freed buffer.
    sync_point();
    TANDEM_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
    b = DeviceBuffer(bytes);
    if (s == kPositions) device_positions_.clear();
  }
  return b.data();
}

const Tensor& CudaBackend::weight(const Tensor& host) {
  if (host.device == Device::Cuda) return host;
  auto it = weights_.find(host.data);
  if (it != weights_.end()) return it->second.view;
  if (!cuda_supports_weight(host.type)) {
    fail("{}: weight type {} has no CUDA kernels", host.name, dtype_info(host.type).name);
  }
  const uint64_t bytes = host.row_bytes() * static_cast<uint64_t>(host.rows());
  sync_point();  // a synchronous upload: not for a graph
  Uploaded up{DeviceBuffer(bytes), host};
  copy_to_device(up.bytes.data(), host.data, bytes);  // landed before any stream reads it
  up.view.data = up.bytes.as<uint8_t>();
  up.view.device = Device::Cuda;
  weight_bytes_ += bytes;
  return weights_.emplace(host.data, std::move(up)).first->second.view;
}

const float* CudaBackend::vec(const std::vector<float>& host) {
  if (host.empty()) return nullptr;
  auto it = vectors_.find(host.data());
  if (it != vectors_.end()) return it->second.as<float>();
  sync_point();  // a synchronous upload: not for a graph
  DeviceBuffer d(floats(static_cast<int64_t>(host.size())));
  copy_to_device(d.data(), host.data(), d.bytes());
  weight_bytes_ += d.bytes();
  return vectors_.emplace(host.data(), std::move(d)).first->second.as<float>();
}

void CudaBackend::matmul(const Tensor& host_w, const float* x, int64_t T, float* y, const float* bias) {
  const Tensor& w = weight(host_w);
  const size_t need = matmul_scratch_bytes(w.ne[0], w.ne[1], T);
  cuda::matmul(ctx_, w, x, T, y, bias, {slot(kMatmulScratch, need), need});
}

void CudaBackend::matmul_experts(const Tensor& host_w, const float* x, int64_t n_x_rows, const int32_t* ids,
                                 int64_t n_slots, float* y) {
  const Tensor& w = weight(host_w);
  const size_t need = matmul_experts_scratch_bytes(w.ne[0], n_x_rows);
  cuda::matmul_experts(ctx_, w, x, n_x_rows, ids, n_slots, y, {slot(kMatmulScratch, need), need});
}

void CudaBackend::reserve_attention(int64_t max_tokens, const AttentionShape& shape, bool gated) {
  const int64_t q_dim = shape.n_head * shape.head_dim, kv_dim = shape.n_head_kv * shape.head_dim;
  slot(kQ, floats(max_tokens * q_dim));
  if (gated) slot(kQG, floats(max_tokens * 2 * q_dim));
  slot(kK, floats(max_tokens * kv_dim));
  slot(kV, floats(max_tokens * kv_dim));
  slot(kAttnOut, floats(max_tokens * q_dim));
  slot(kPositions, static_cast<size_t>(max_tokens) * sizeof(int32_t));
  if (positions_staging_.bytes() < static_cast<size_t>(max_tokens) * sizeof(int32_t)) {
    positions_staging_ = PinnedBuffer(static_cast<size_t>(max_tokens) * sizeof(int32_t));
  }
  host_positions_.reserve(static_cast<size_t>(max_tokens));
  device_positions_.reserve(static_cast<size_t>(max_tokens));
}

void CudaBackend::reserve_delta_net(int64_t max_tokens, const DeltaNetShape& shape, int64_t conv_kernel) {
  const int64_t Ck = shape.n_k * shape.d_k, Cv = shape.n_v * shape.d_v, C = 2 * Ck + Cv;
  slot(kP, floats(max_tokens * C));
  slot(kConv, floats(max_tokens * C));
  for (const Slot s : {kZ, kDv, kDo}) slot(s, floats(max_tokens * Cv));
  for (const Slot s : {kDq, kDk}) slot(s, floats(max_tokens * Ck));
  for (const Slot s : {kB, kAlpha}) slot(s, floats(max_tokens * shape.n_v));
  slot(kDeltaScratch, delta_rule_chunked_scratch_bytes(shape, max_tokens));
}

void CudaBackend::reserve_ffn(int64_t max_tokens, int64_t n_embd, const FfnWeights& w) {
  int64_t width = w.is_moe() ? w.gate_exps.ne[1] * w.n_expert_used : w.gate.ne[1];
  if (w.gate_shexp.valid()) width = std::max(width, w.gate_shexp.ne[1]);
  slot(kFfnA, floats(max_tokens * width));
  slot(kFfnB, floats(max_tokens * width));
  if (!w.is_moe()) return;
  slot(kRouterLogits, floats(max_tokens * w.router.ne[1]));
  // Prompt MoE rows: every slot plus each expert's chunk padding (expert_groups.h).
  const int64_t slots = max_tokens * w.n_expert_used;
  const int64_t rows = max_tokens > kMatvecMaxTokens ? max_expert_rows(slots, w.gate_exps.ne[2]) : slots;
  slot(kFfnA, floats(rows * w.gate_exps.ne[1]));
  slot(kFfnB, floats(rows * w.gate_exps.ne[1]));
  slot(kSlotOut, floats(rows * n_embd));
  slot(kSlotIn, floats(rows * n_embd));
  slot(kSlotOrder, static_cast<size_t>(rows + slots + rows / kChunkTokens) * sizeof(int32_t));
}

void CudaBackend::embed(const Tensor& table, std::span<const int32_t> tokens, float* x) {
  const auto n = static_cast<int64_t>(tokens.size());
  int32_t* ids = slot_n<int32_t>(kTokens, tokens.size());
  copy_from_host(ids, tokens.data(), tokens.size_bytes());
  cuda::embed(ctx_.stream(), weight(table), ids, n, x);
}

void CudaBackend::rms_norm(const float* x, const std::vector<float>& w, int64_t rows, int64_t n, float eps,
                           float* out) {
  queue();
  cuda::rms_norm(ctx_.stream(), x, vec(w), rows, n, eps, out);
}

void CudaBackend::add(float* x, const float* y, int64_t n) {
  queue();
  cuda::add(ctx_.stream(), x, y, n);
}

void CudaBackend::attention(const AttentionWeights& w, const AttentionShape& shape, const float* a,
                            std::span<const AttentionSequence> seqs, float* out) {
  const int64_t H = shape.n_head, Hkv = shape.n_head_kv, d = shape.head_dim, q_dim = H * d, kv_dim = Hkv * d;
  queue();
  host_positions_.clear();
  int64_t max_kv = 0;
  for (const AttentionSequence& seq : seqs) {
    check_cache(seq.k, "K");
    check_cache(seq.v, "V");
    for (int64_t i = 0; i < seq.n_tokens; ++i) host_positions_.push_back(static_cast<int32_t>(seq.n_past + i));
    max_kv = std::max(max_kv, seq.n_past + seq.n_tokens);
  }
  const auto T = static_cast<int64_t>(host_positions_.size());
  if (w.gated && w.q_norm.empty()) fail("CUDA attention: a gated query without q norm is not supported");
  float* q = slot_n<float>(kQ, static_cast<size_t>(T * q_dim));
  float* qg = w.gated ? slot_n<float>(kQG, static_cast<size_t>(T * 2 * q_dim)) : nullptr;
  float* k = slot_n<float>(kK, static_cast<size_t>(T * kv_dim));
  float* v = slot_n<float>(kV, static_cast<size_t>(T * kv_dim));
  float* attn = slot_n<float>(kAttnOut, static_cast<size_t>(T * q_dim));
  int32_t* pos = slot_n<int32_t>(kPositions, static_cast<size_t>(T));
  // Every attention layer of a forward pass has the same positions: upload them once,
  // from page-locked staging (so a graph can hold the copy; the previous pass has finished
  // with it: every pass ends in a sync for its logits).
  if (host_positions_ != device_positions_) {
    const size_t bytes = host_positions_.size() * sizeof(int32_t);
    if (positions_staging_.bytes() < bytes) {
      sync_point();
      TANDEM_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
      positions_staging_ = PinnedBuffer(bytes);
    }
    std::memcpy(positions_staging_.data(), host_positions_.data(), bytes);
    copy_from_host(pos, positions_staging_.data(), bytes);
    device_positions_ = host_positions_;
  }
  const cudaStream_t s = ctx_.stream();
  matmul(w.wq, a, T, w.gated ? qg : q, vec(w.bq));
  matmul(w.wk, a, T, k, vec(w.bk));
  matmul(w.wv, a, T, v, vec(w.bv));
  if (w.gated) {
    // [T][H][q_h | gate_h]: the norm reads q_h with stride 2d into a compact q.
    cuda::rms_norm(s, qg, 2 * d, vec(w.q_norm), T * H, d, shape.rms_eps, q, d);
  } else if (!w.q_norm.empty()) {
    cuda::rms_norm(s, q, vec(w.q_norm), T * H, d, shape.rms_eps, q);
  }
  if (!w.k_norm.empty()) cuda::rms_norm(s, k, vec(w.k_norm), T * Hkv, d, shape.rms_eps, k);
  rope_neox(s, q, T, H, d, shape.n_rot, pos, shape.rope_base);
  rope_neox(s, k, T, Hkv, d, shape.n_rot, pos, shape.rope_base);
  const size_t scratch_bytes = attention_scratch_bytes(T, H, Hkv, d, max_kv);
  void* scratch = scratch_bytes == 0 ? nullptr : slot(kAttnScratch, scratch_bytes);
  int64_t first = 0;
  for (const AttentionSequence& seq : seqs) {
    const int64_t n = seq.n_tokens;
    const KvCacheView kc{seq.k.data, seq.k.type, seq.k.row_bytes, seq.n_ctx};
    const KvCacheView vc{seq.v.data, seq.v.type, seq.v.row_bytes, seq.n_ctx};
    kv_cache_write(s, k + first * kv_dim, n, kv_dim, pos + first, kc);
    kv_cache_write(s, v + first * kv_dim, n, kv_dim, pos + first, vc);
    cuda::attention(s, q + first * q_dim, n, H, Hkv, d, kc, vc, pos + first, seq.n_past + n, attn + first * q_dim,
                    scratch, scratch_bytes);
    first += n;
  }
  if (w.gated) sigmoid_gate(s, attn, T * H, d, qg + d, 2 * d);
  matmul(w.wo, attn, T, out);
}

void CudaBackend::delta_net(const DeltaNetWeights& w, const DeltaNetShape& shape, const float* a,
                            std::span<const DeltaNetSequence> seqs, float* out) {
  int64_t T = 0;
  for (const DeltaNetSequence& seq : seqs) T += seq.n_tokens;
  queue();
  const int64_t nv = shape.n_v, dv = shape.d_v, Ck = shape.n_k * shape.d_k, Cv = nv * dv, C = 2 * Ck + Cv;
  const cudaStream_t s = ctx_.stream();
  float* P = slot_n<float>(kP, static_cast<size_t>(T * C));
  float* conv = slot_n<float>(kConv, static_cast<size_t>(T * C));
  float* z = slot_n<float>(kZ, static_cast<size_t>(T * Cv));
  float* q = slot_n<float>(kDq, static_cast<size_t>(T * Ck));
  float* k = slot_n<float>(kDk, static_cast<size_t>(T * Ck));
  float* v = slot_n<float>(kDv, static_cast<size_t>(T * Cv));
  float* o = slot_n<float>(kDo, static_cast<size_t>(T * Cv));
  float* b = slot_n<float>(kB, static_cast<size_t>(T * nv));
  float* alpha = slot_n<float>(kAlpha, static_cast<size_t>(T * nv));
  matmul(w.qkv, a, T, P);
  matmul(w.gate, a, T, z);
  matmul(w.beta, a, T, b);
  matmul(w.alpha, a, T, alpha);
  int64_t first = 0;
  for (const DeltaNetSequence& seq : seqs) {
    conv1d_silu(s, P + first * C, seq.n_tokens, C, vec(w.conv_taps), w.conv_kernel,
                seq.conv_in != nullptr ? seq.conv_in : seq.conv_state, seq.conv_state, conv + first * C);
    first += seq.n_tokens;
  }
  // beta over b and g over alpha (delta_net.h allows both).
  delta_net_prep(s, shape, T, conv, b, alpha, vec(w.a), vec(w.dt_bias), w.rms_eps, q, k, v, b, alpha);
  first = 0;
  for (const DeltaNetSequence& seq : seqs) {
    const int64_t n = seq.n_tokens;
    const float *qs = q + first * Ck, *ks = k + first * Ck, *vs = v + first * Cv, *g = alpha + first * nv,
                *beta = b + first * nv;
    const float* ssm_in = seq.ssm_in != nullptr ? seq.ssm_in : seq.ssm_state;
    float* os = o + first * Cv;
    if (n < 16) {  // the CPU's switch: recurrent for decode, chunked for prompts
      delta_rule_recurrent(s, shape, n, qs, ks, vs, g, beta, ssm_in, seq.ssm_state, os, seq.ssm_first);
    } else if (seq.ssm_first == nullptr) {
      const size_t bytes = delta_rule_chunked_scratch_bytes(shape, n);
      delta_rule_chunked(s, shape, n, qs, ks, vs, g, beta, ssm_in, seq.ssm_state, os, slot(kDeltaScratch, bytes),
                         bytes);
    } else {  // a long verify pass: its first token alone, to have the state after it
      delta_rule_recurrent(s, shape, 1, qs, ks, vs, g, beta, ssm_in, seq.ssm_first, os);
      const size_t bytes = delta_rule_chunked_scratch_bytes(shape, n - 1);
      delta_rule_chunked(s, shape, n - 1, qs + Ck, ks + Ck, vs + Cv, g + nv, beta + nv, seq.ssm_first, seq.ssm_state,
                         os + Cv, slot(kDeltaScratch, bytes), bytes);
    }
    if (seq.record != nullptr) {  // a verify pass keeps its inputs for delta_net_rollback (device to device)
      const DeltaNetRecord& r = *seq.record;
      const std::pair<float*, std::pair<const float*, int64_t>> copies[] = {
          {r.P, {P + first * C, n * C}}, {r.q, {qs, n * Ck}}, {r.k, {ks, n * Ck}},
          {r.v, {vs, n * Cv}},          {r.g, {g, n * nv}},   {r.beta, {beta, n * nv}}};
      for (const auto& [dst, src] : copies) {
        TANDEM_CUDA_CHECK(cudaMemcpyAsync(dst, src.first, static_cast<size_t>(src.second) * sizeof(float),
                                          cudaMemcpyDeviceToDevice, s));
      }
    }
    first += n;
  }
  gated_rms_norm(s, o, z, vec(w.norm), T * nv, dv, w.rms_eps, o);
  matmul(w.out, o, T, out);
}

void CudaBackend::delta_net_rollback(const DeltaNetShape& shape, int64_t conv_kernel, const DeltaNetRollback& r) {
  queue();
  const cudaStream_t s = ctx_.stream();
  const int64_t C = 2 * shape.n_k * shape.d_k + shape.n_v * shape.d_v;
  check_delta_net_rollback(r);
  conv_state_after(s, r.conv_in, r.record.P, r.keep, C, conv_kernel, r.conv_out);
  if (r.keep == 1) return;  // ssm_out is ssm_in, the state after the first position
  const int64_t Ck = shape.n_k * shape.d_k, Cv = shape.n_v * shape.d_v, nv = shape.n_v;
  const DeltaNetRecord& rec = r.record;
  delta_rule_recurrent(s, shape, r.keep - 1, rec.q + Ck, rec.k + Ck, rec.v + Cv, rec.g + nv, rec.beta + nv, r.ssm_in,
                       r.ssm_out, nullptr);
}

void CudaBackend::swiglu_ffn(const Tensor& gate, const Tensor& up, const Tensor& down, const float* m, int64_t T,
                             float* out) {
  const int64_t F = gate.ne[1];
  float* g = slot_n<float>(kFfnA, static_cast<size_t>(T * F));
  float* u = slot_n<float>(kFfnB, static_cast<size_t>(T * F));
  matmul(gate, m, T, g);
  matmul(up, m, T, u);
  swiglu(ctx_.stream(), g, u, T * F, g);
  matmul(down, g, T, out);
}

void CudaBackend::dense_ffn(const FfnWeights& w, const float* m, int64_t T, float* out) {
  queue();
  swiglu_ffn(w.gate, w.up, w.down, m, T, out);
}

void CudaBackend::moe_route(const FfnWeights& w, const float* m, int64_t T, int32_t* chosen, float* weight) {
  const int64_t E = w.router.ne[1];
  queue();
  float* logits = slot_n<float>(kRouterLogits, static_cast<size_t>(T * E));
  matmul(w.router, m, T, logits);
  cuda::moe_route(ctx_.stream(), logits, T, E, w.n_expert_used, true, chosen, weight);
}

void CudaBackend::moe_experts(const FfnWeights& w, const float* m, int64_t T, const int32_t* chosen,
                              const float* weight, float* out) {
  const int64_t k = w.n_expert_used, F = w.gate_exps.ne[1], D = w.down_exps.ne[1], slots = T * k;
  queue();
  if (T <= kMatvecMaxTokens) {
    // Decode: slot t*k + j applies expert chosen[t][j] to token t, each slot one mat-vec
    // over its expert (k slots read k experts: what decode must read anyway).
    float* g = slot_n<float>(kFfnA, static_cast<size_t>(slots * F));
    float* u = slot_n<float>(kFfnB, static_cast<size_t>(slots * F));
    float* y = slot_n<float>(kSlotOut, static_cast<size_t>(slots * D));
    matmul_experts(w.gate_exps, m, T, chosen, slots, g);
    matmul_experts(w.up_exps, m, T, chosen, slots, u);
    swiglu(ctx_.stream(), g, u, slots * F, g);
    matmul_experts(w.down_exps, g, slots, chosen, slots, y);
    moe_weighted_sum(ctx_.stream(), y, nullptr, weight, T, k, D, out);
    return;
  }
  // Prompts: the slots laid out in rows by expert, each matrix over all experts at once.
  const PromptExperts p = group_prompt_experts(w, m, T, chosen);
  const int64_t E = w.gate_exps.ne[2];
  const Tensor &gate = this->weight(w.gate_exps), &up = this->weight(w.up_exps), &down = this->weight(w.down_exps);
  prompt_experts_matrix(gate, 0, E, p.xg, p.g, p);
  prompt_experts_matrix(up, 0, E, p.xg, p.u, p);
  swiglu(ctx_.stream(), p.g, p.u, groups_.rows * F, p.g);
  prompt_experts_matrix(down, 0, E, p.g, p.y, p);
  moe_weighted_sum(ctx_.stream(), p.y, p.slot_row, weight, T, k, D, out);
}

CudaBackend::PromptExperts CudaBackend::group_prompt_experts(const FfnWeights& w, const float* m, int64_t T,
                                                             const int32_t* chosen) {
  // The router's choices come to the host (one small sync per layer) and the slots are laid
  // out in rows by expert (expert_groups.h): experts with few tokens run as 8-token chunks,
  // one mat-vec launch per weight matrix for all of them; the busiest each as a GEMM.
  const int64_t k = w.n_expert_used, F = w.gate_exps.ne[1], D = w.down_exps.ne[1], slots = T * k;
  host_ids_.resize(static_cast<size_t>(slots));
  copy_to_host(host_ids_.data(), chosen, host_ids_.size() * sizeof(int32_t));
  group_slots_by_expert(host_ids_, k, w.gate_exps.ne[2], expert_gemm_min_tokens_, groups_);
  const int64_t rows = groups_.rows;
  // One upload: the rows' tokens, the slots' rows, the chunks' experts.
  expert_staging_.assign(groups_.row_token.begin(), groups_.row_token.end());
  expert_staging_.insert(expert_staging_.end(), groups_.slot_row.begin(), groups_.slot_row.end());
  expert_staging_.insert(expert_staging_.end(), groups_.chunk_expert.begin(), groups_.chunk_expert.end());
  PromptExperts p;
  int32_t* row_token = slot_n<int32_t>(kSlotOrder, expert_staging_.size());
  p.slot_row = row_token + rows;
  p.chunk_expert = p.slot_row + slots;
  p.g = slot_n<float>(kFfnA, static_cast<size_t>(rows * F));
  p.u = slot_n<float>(kFfnB, static_cast<size_t>(rows * F));
  p.y = slot_n<float>(kSlotOut, static_cast<size_t>(rows * D));
  p.xg = slot_n<float>(kSlotIn, static_cast<size_t>(rows * D));
  int64_t widest = 0;
  for (const ExpertGroups::Gemm& e : groups_.gemms) widest = std::max(widest, e.rows);
  const size_t bytes = std::max({matmul_experts_scratch_bytes(std::max(D, F), std::max<int64_t>(groups_.chunk_rows, 1)),
                                 matmul_scratch_bytes(D, F, widest), matmul_scratch_bytes(F, D, widest)});
  p.scratch = {slot(kMatmulScratch, bytes), bytes};
  copy_from_host(row_token, expert_staging_.data(), expert_staging_.size() * sizeof(int32_t));
  gather_rows(ctx_.stream(), m, row_token, rows, D, p.xg);
  return p;
}

bool CudaBackend::prompt_experts_chosen(int64_t e0, int64_t e1) const {
  const auto& c = groups_.chunk_expert;
  if (std::lower_bound(c.begin(), c.end(), e0) != std::lower_bound(c.begin(), c.end(), e1)) return true;
  return std::any_of(groups_.gemms.begin(), groups_.gemms.end(),
                     [&](const ExpertGroups::Gemm& g) { return g.expert >= e0 && g.expert < e1; });
}

void CudaBackend::prompt_experts_matrix(const Tensor& w, int64_t e0, int64_t e1, const float* x, float* y,
                                        const PromptExperts& p) {
  const int64_t n_in = w.ne[0], n_out = w.ne[1];
  const auto& c = groups_.chunk_expert;
  const int64_t c0 = std::lower_bound(c.begin(), c.end(), e0) - c.begin();
  const int64_t c1 = std::lower_bound(c.begin(), c.end(), e1) - c.begin();
  const int64_t r0 = c0 * kChunkTokens;
  matmul_expert_chunks(ctx_, w, x + r0 * n_in, c1 - c0, p.chunk_expert + c0, y + r0 * n_out, p.scratch,
                       static_cast<int32_t>(e0));
  for (const ExpertGroups::Gemm& g : groups_.gemms) {
    if (g.expert < e0 || g.expert >= e1) continue;
    matmul(w.matrix(g.expert - e0), x + g.first_row * n_in, g.rows, y + g.first_row * n_out);
  }
}

void CudaBackend::reserve_expert_streaming(uint64_t bytes) { slot(kStreamedExperts, bytes); }

void CudaBackend::set_stream_chunk_bytes(size_t bytes) {
  if (streaming_ready_) fail("set_stream_chunk_bytes: the staging buffers already exist");
  if (bytes == 0) fail("set_stream_chunk_bytes: a chunk of 0 bytes");
  stream_chunk_bytes_ = bytes;
}

void CudaBackend::moe_experts_streamed(const FfnWeights& w, Backend& holder, const float* m, int64_t T,
                                       const int32_t* chosen, const float* weight, float* out) {
  sync_point();  // prompts only: never part of a graph
  if (!streaming_ready_) {  // set only once everything exists: a failure here retries next time
    for (auto* events : {&staging_free_, &slab_ready_, &slab_consumed_}) {
      for (cudaEvent_t& e : *events) {
        if (e == nullptr) TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      }
    }
    for (PinnedBuffer& b : stream_staging_) {
      if (b.data() == nullptr) b = PinnedBuffer(stream_chunk_bytes_);
    }
    streaming_ready_ = true;
  }
  const Tensor* const parts[] = {&w.gate_exps, &w.up_exps, &w.down_exps};
  // Two slabs in the buffer reserve_expert_streaming sized (backend.h's slab layout).
  const uint64_t buffer = slots_[kStreamedExperts].bytes(), half = expert_slab_bytes(buffer);
  auto* slabs = static_cast<uint8_t*>(slots_[kStreamedExperts].data());
  for (const Tensor* t : parts) {
    if (!cuda_supports_weight(t->type)) fail("{}: weight type {} has no CUDA kernels", t->name, dtype_name(t->type));
    const uint64_t expert_bytes = t->row_bytes() * static_cast<uint64_t>(t->ne[1]);
    if (experts_per_slab(buffer, expert_bytes, t->ne[2]) == 0) {
      fail("{}: the expert streaming buffer ({} bytes) cannot hold two of its {}-byte experts", t->name,
           slots_[kStreamedExperts].bytes(), expert_bytes);
    }
  }
  // How each matrix crosses: as stored and rearranged here, or unpacked by the holder.
  const Unshuffle* unshuffle[3];
  for (int i = 0; i < 3; ++i) unshuffle[i] = unshuffle_for(holder.stored_rows_layout(*parts[i]), *parts[i]);
  const PromptExperts p = group_prompt_experts(w, m, T, chosen);
  const int64_t F = w.gate_exps.ne[1];
  const cudaStream_t copy = ctx_.copy_stream();
  float* const outputs[] = {p.g, p.u, p.y};
  for (int i = 0; i < 3; ++i) {
    const Tensor& t = *parts[i];
    if (i == 2) swiglu(ctx_.stream(), p.g, p.u, groups_.rows * F, p.g);
    const size_t row_bytes = t.row_bytes();
    const int64_t E = t.ne[2], per_slab = experts_per_slab(buffer, row_bytes * static_cast<uint64_t>(t.ne[1]), E);
    // Whole groups of 8 rows per staging chunk: interleaved rows cross (or unpack) by group.
    const int64_t chunk = static_cast<int64_t>(stream_chunk_bytes_ / row_bytes) / 8 * 8;
    if (chunk == 0) fail("{}: a row of {} bytes is too long to stream in {}-byte chunks", t.name, row_bytes, stream_chunk_bytes_);
    for (int64_t e0 = 0; e0 < E; e0 += per_slab) {
      const int64_t e1 = std::min(E, e0 + per_slab);
      if (!prompt_experts_chosen(e0, e1)) continue;  // no token chose them: nothing to move
      const int buf = slab_turn_;
      slab_turn_ ^= 1;
      uint8_t* slab = slabs + buf * half;
      // The slab's previous experts must be done before it is refilled.
      TANDEM_CUDA_CHECK(cudaStreamWaitEvent(copy, slab_consumed_[buf], 0));
      const int64_t first_row = e0 * t.ne[1], n_rows = (e1 - e0) * t.ne[1];
      for (int64_t r = 0; r < n_rows; r += chunk) {
        const int64_t n = std::min(chunk, n_rows - r);
        // The CPU fills one staging buffer while the link empties the other.
        TANDEM_CUDA_CHECK(cudaEventSynchronize(staging_free_[staging_turn_]));
        void* staging = stream_staging_[staging_turn_].data();
        if (unshuffle[i] != nullptr) {
          if (holder.read_stored_rows(t, first_row + r, n, staging) == nullptr) {
            fail("{}: the holder's row layout changed while streaming", t.name);
          }
        } else {
          holder.read_weight_rows(t, first_row + r, n, staging);
        }
        TANDEM_CUDA_CHECK(cudaMemcpyAsync(slab + static_cast<size_t>(r) * row_bytes, stream_staging_[staging_turn_].data(),
                                          static_cast<size_t>(n) * row_bytes, cudaMemcpyHostToDevice, copy));
        TANDEM_CUDA_CHECK(cudaEventRecord(staging_free_[staging_turn_], copy));
        staging_turn_ ^= 1;
      }
      streamed_bytes_ += static_cast<uint64_t>(n_rows) * row_bytes;
      if (unshuffle[i] != nullptr) {  // after the slab's copies, on the same stream
        unshuffle_groups(copy, slab, n_rows / 8, row_bytes, unshuffle[i]->block_bytes,
                         unshuffle[i]->byte_src.as<uint16_t>(), unshuffle[i]->bit_src.as<uint16_t>());
      }
      TANDEM_CUDA_CHECK(cudaEventRecord(slab_ready_[buf], copy));
      TANDEM_CUDA_CHECK(cudaStreamWaitEvent(ctx_.stream(), slab_ready_[buf], 0));
      Tensor here = t;
      here.data = slab;
      here.device = Device::Cuda;
      here.ne[2] = e1 - e0;
      prompt_experts_matrix(here, e0, e1, i == 2 ? p.g : p.xg, outputs[i], p);
      TANDEM_CUDA_CHECK(cudaEventRecord(slab_consumed_[buf], ctx_.stream()));
    }
  }
  moe_weighted_sum(ctx_.stream(), p.y, p.slot_row, weight, T, w.n_expert_used, w.down_exps.ne[1], out);
}

const CudaBackend::Unshuffle* CudaBackend::unshuffle_for(StoredRowsUnpack* how, const Tensor& w) {
  if (how == nullptr) return nullptr;  // the file's layout: the holder's plain copy is already right
  if (w.row_bytes() > kUnshuffleMaxRowBytes || w.ne[1] % 8 != 0) return nullptr;
  auto found = unshuffles_.find(how);
  if (found == unshuffles_.end()) {  // learnt once per layout (a few unpacks of one block on the host)
    Unshuffle u;
    if (const auto map = derive_row_unshuffle(how, w.type)) {
      u.byte_src = DeviceBuffer(map->byte_src.size() * sizeof(uint16_t));
      u.bit_src = DeviceBuffer(map->bit_src.size() * sizeof(uint16_t));
      copy_to_device(u.byte_src.data(), map->byte_src.data(), u.byte_src.bytes());
      copy_to_device(u.bit_src.data(), map->bit_src.data(), u.bit_src.bytes());
      u.block_bytes = map->block_bytes;  // last: an entry is usable only once both maps are there
    }
    found = unshuffles_.emplace(how, std::move(u)).first;
  }
  return found->second.block_bytes == 0 ? nullptr : &found->second;
}

void CudaBackend::shared_expert(const FfnWeights& w, const float* m, int64_t T, float* out) {
  const int64_t D = w.down_shexp.ne[1];
  queue();
  float* shared = slot_n<float>(kSlotOut, static_cast<size_t>(T * D));
  swiglu_ffn(w.gate_shexp, w.up_shexp, w.down_shexp, m, T, shared);
  shared_expert_gate_add(ctx_.stream(), m, vec(w.shexp_gate), shared, T, D, out);
}

void CudaBackend::logits(const std::vector<float>& norm, float eps, const Tensor& head, const float* x, int64_t rows,
                         int64_t D, float* scratch, float* logits) {
  const int64_t V = head.ne[1];
  queue();
  float* dev = slot_n<float>(kLogits, static_cast<size_t>(rows * V));
  cuda::rms_norm(ctx_.stream(), x, vec(norm), rows, D, eps, scratch);
  matmul(head, scratch, rows, dev);
  copy_to_host(logits, dev, floats(rows * V));
}

}  // namespace tandem::cuda
