// Argument checks of the CUDA op set (ops.h): every public op validates its shapes, types,
// alignments and scratch here, on the host and before anything is launched, and fails
// with a message naming the op and the offending value; then it calls the unchecked
// launcher of its .cu file. (Kernels are built without fmt, so the messages live here.)
#include <cstdint>
#include <limits>

#include "backend/cuda/ops.h"
#include "backend/rope.h"
#include "core/error.h"

namespace tandem::cuda {
namespace {

constexpr int64_t kMaxGrid = std::numeric_limits<int32_t>::max();  // blocks along x, and int indices

void check_rows(const char* op, int64_t n_rows, int64_t n) {
  if (n_rows < 0 || n_rows > kMaxGrid) fail("{}: {} rows is out of range", op, n_rows);
  if (n <= 0 || n > kMaxGrid) fail("{}: row length {} is out of range", op, n);
}

void check_pointer(const char* op, const void* p, const char* what) {
  if (p == nullptr) fail("{}: {} is a null pointer", op, what);
}

void check_aligned(const char* op, const void* p, size_t align, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % align != 0) fail("{}: {} is not {}-byte aligned", op, what, align);
}

bool is_cache_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::Q8_0 || t == DType::Q4_0; }

// Bytes of n values of a cache type (n a multiple of its block).
size_t cache_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  return static_cast<size_t>(n / info.block_elems) * info.block_bytes;
}

// The cache's type, row size and alignment against rows of row_elems values.
// block_of: the length that must hold whole quant blocks (the head size, or the row).
void check_cache(const char* op, const char* which, const KvCacheView& c, int64_t row_elems, int64_t block_of,
                 const char* block_what) {
  if (!is_cache_type(c.type)) {
    fail("{}: {} cache type {} is not supported on the GPU (use f32, f16, q8_0 or q4_0)", op, which,
         dtype_name(c.type));
  }
  const DTypeInfo& info = dtype_info(c.type);
  if (block_of % info.block_elems != 0) {
    fail("{}: {} cache type {} needs a {} that is a multiple of {} (got {})", op, which, dtype_name(c.type),
         block_what, info.block_elems, block_of);
  }
  check_pointer(op, c.data, which);
  if (c.n_rows <= 0) fail("{}: {} cache has {} rows", op, which, c.n_rows);
  if (c.row_bytes < cache_bytes(c.type, row_elems)) {
    fail("{}: {} cache rows of {} bytes are too short for {} {} values ({} bytes)", op, which, c.row_bytes, row_elems,
         dtype_name(c.type), cache_bytes(c.type, row_elems));
  }
  // Kernels read f32 caches by 16 bytes, f16 by 8, quant blocks by 2.
  const size_t align = c.type == DType::F32 ? 16 : c.type == DType::F16 ? 8 : 2;
  if (reinterpret_cast<uintptr_t>(c.data) % align != 0 || c.row_bytes % align != 0) {
    fail("{}: {} cache data and row size must be {}-byte aligned for {}", op, which, align, dtype_name(c.type));
  }
}

}  // namespace

void rms_norm(cudaStream_t stream, const float* x, int64_t x_stride, const float* w, int64_t n_rows, int64_t n,
              float eps, float* out, int64_t out_stride) {
  check_rows("rms_norm", n_rows, n);
  if (x_stride < n || out_stride < n) {
    fail("rms_norm: strides {}, {} are shorter than rows of {}", x_stride, out_stride, n);
  }
  if (n_rows == 0) return;
  check_pointer("rms_norm", x, "x");
  check_pointer("rms_norm", w, "weight");
  check_pointer("rms_norm", out, "out");
  if (x == out && x_stride != out_stride) {
    fail("rms_norm: in place needs equal strides ({} vs {})", x_stride, out_stride);
  }
  detail::launch_rms_norm(stream, x, x_stride, w, n_rows, n, eps, out, out_stride);
}

void add_rms_norm(cudaStream_t stream, float* x, const float* y, const float* w, int64_t n_rows, int64_t n, float eps,
                  float* out) {
  check_rows("add_rms_norm", n_rows, n);
  if (n_rows == 0) return;
  check_pointer("add_rms_norm", x, "x");
  check_pointer("add_rms_norm", y, "y");
  check_pointer("add_rms_norm", w, "weight");
  check_pointer("add_rms_norm", out, "out");
  if (out == x) fail("add_rms_norm: out must not alias x (x keeps the sum)");
  detail::launch_add_rms_norm(stream, x, y, w, n_rows, n, eps, out);
}

void l2_norm(cudaStream_t stream, const float* x, int64_t x_stride, int64_t n_rows, int64_t n, float eps, float scale,
             float* out, int64_t out_stride) {
  check_rows("l2_norm", n_rows, n);
  if (x_stride < n || out_stride < n) {
    fail("l2_norm: strides {}, {} are shorter than rows of {}", x_stride, out_stride, n);
  }
  if (n_rows == 0) return;
  check_pointer("l2_norm", x, "x");
  check_pointer("l2_norm", out, "out");
  if (x == out && x_stride != out_stride) {
    fail("l2_norm: in place needs equal strides ({} vs {})", x_stride, out_stride);
  }
  detail::launch_l2_norm(stream, x, x_stride, n_rows, n, eps, scale, out, out_stride);
}

void rope_neox(cudaStream_t stream, float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t n_rot,
               const int32_t* positions, float freq_base) {
  check_rows("rope_neox", n_tokens, head_dim);
  if (n_heads <= 0 || n_heads * head_dim > kMaxGrid) fail("rope_neox: {} heads is out of range", n_heads);
  if (n_rot < 0 || n_rot % 2 != 0 || n_rot > head_dim || n_rot > 256) {
    fail("rope_neox: rotary dims {} must be even and at most the head size {} (and 256)", n_rot, head_dim);
  }
  if (!(freq_base > 0.0f)) fail("rope_neox: freq_base {} must be positive", freq_base);
  if (n_tokens == 0) return;
  check_pointer("rope_neox", x, "x");
  check_pointer("rope_neox", positions, "positions");
  detail::launch_rope_neox(stream, x, n_tokens, n_heads, head_dim, n_rot, positions,
                           rope_theta_scale(freq_base, n_rot));
}

void swiglu(cudaStream_t stream, const float* gate, const float* up, int64_t n, float* out) {
  if (n < 0) fail("swiglu: {} values", n);
  if (n == 0) return;
  check_pointer("swiglu", gate, "gate");
  check_pointer("swiglu", up, "up");
  check_pointer("swiglu", out, "out");
  detail::launch_swiglu(stream, gate, up, n, out);
}

void gather_rows(cudaStream_t stream, const float* src, const int32_t* rows, int64_t n_rows, int64_t n, float* dst) {
  check_rows("gather_rows", n_rows, n);
  if (n_rows == 0) return;
  check_pointer("gather_rows", src, "src");
  check_pointer("gather_rows", rows, "rows");
  check_pointer("gather_rows", dst, "dst");
  if (src == dst) fail("gather_rows: dst must not alias src");
  detail::launch_gather_rows(stream, src, rows, n_rows, n, dst);
}

void add(cudaStream_t stream, float* x, const float* y, int64_t n) {
  if (n < 0) fail("add: {} values", n);
  if (n == 0) return;
  check_pointer("add", x, "x");
  check_pointer("add", y, "y");
  detail::launch_add(stream, x, y, n);
}

void scale(cudaStream_t stream, float* x, float s, int64_t n) {
  if (n < 0) fail("scale: {} values", n);
  if (n == 0) return;
  check_pointer("scale", x, "x");
  detail::launch_scale(stream, x, s, n);
}

void sigmoid_gate(cudaStream_t stream, float* o, int64_t n_rows, int64_t n, const float* g, int64_t g_stride) {
  check_rows("sigmoid_gate", n_rows, n);
  if (g_stride < n) fail("sigmoid_gate: gate stride {} is shorter than rows of {}", g_stride, n);
  if (n_rows == 0) return;
  check_pointer("sigmoid_gate", o, "o");
  check_pointer("sigmoid_gate", g, "gate");
  detail::launch_sigmoid_gate(stream, o, n_rows, n, g, g_stride);
}

void moe_route(cudaStream_t stream, const float* logits, int64_t n_tokens, int64_t n_expert, int64_t k,
               bool renormalize, int32_t* ids, float* weights) {
  if (n_expert < 1 || n_expert > 512) fail("moe_route: {} experts is not supported (1..512)", n_expert);
  if (k < 1 || k > 16 || k > n_expert) {
    fail("moe_route: {} experts per token is not supported with {} experts (1..min(16, experts))", k, n_expert);
  }
  if (n_tokens < 0 || n_tokens > kMaxGrid) fail("moe_route: {} tokens is out of range", n_tokens);
  if (n_tokens == 0) return;
  check_pointer("moe_route", logits, "logits");
  check_pointer("moe_route", ids, "ids");
  check_pointer("moe_route", weights, "weights");
  detail::launch_moe_route(stream, logits, n_tokens, n_expert, k, renormalize, ids, weights);
}

void moe_weighted_sum(cudaStream_t stream, const float* expert_out, const int32_t* rows, const float* weights,
                      int64_t n_tokens, int64_t k, int64_t n, float* out) {
  check_rows("moe_weighted_sum", n_tokens, n);
  if (k < 1 || k > 512) fail("moe_weighted_sum: {} experts per token is out of range", k);
  if (n > int64_t{65535} * 256) fail("moe_weighted_sum: rows of {} values are too long", n);
  if (n_tokens == 0) return;
  check_pointer("moe_weighted_sum", expert_out, "expert_out");
  check_pointer("moe_weighted_sum", weights, "weights");
  check_pointer("moe_weighted_sum", out, "out");
  detail::launch_moe_weighted_sum(stream, expert_out, rows, weights, n_tokens, k, n, out);
}

void shared_expert_gate_add(cudaStream_t stream, const float* m, const float* gate_w, const float* shared,
                            int64_t n_tokens, int64_t n, float* out) {
  check_rows("shared_expert_gate_add", n_tokens, n);
  if (n_tokens == 0) return;
  check_pointer("shared_expert_gate_add", m, "m");
  check_pointer("shared_expert_gate_add", gate_w, "gate weight");
  check_pointer("shared_expert_gate_add", shared, "shared");
  check_pointer("shared_expert_gate_add", out, "out");
  detail::launch_shared_expert_gate_add(stream, m, gate_w, shared, n_tokens, n, out);
}

void argmax_rows(cudaStream_t stream, const float* logits, int64_t n_rows, int64_t n, int32_t* out) {
  check_rows("argmax_rows", n_rows, n);
  if (n_rows == 0) return;
  check_pointer("argmax_rows", logits, "logits");
  check_pointer("argmax_rows", out, "out");
  detail::launch_argmax_rows(stream, logits, n_rows, n, out);
}

void kv_cache_write(cudaStream_t stream, const float* rows, int64_t n_rows, int64_t row_elems,
                    const int32_t* positions, const KvCacheView& cache) {
  check_rows("kv_cache_write", n_rows, row_elems);
  check_cache("kv_cache_write", "the", cache, row_elems, row_elems, "row length");
  if (n_rows == 0) return;
  check_pointer("kv_cache_write", rows, "rows");
  check_pointer("kv_cache_write", positions, "positions");
  detail::launch_kv_cache_write(stream, rows, n_rows, row_elems, positions, cache);
}

void attention(cudaStream_t stream, const float* q, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
               int64_t head_dim, const KvCacheView& k, const KvCacheView& v, const int32_t* positions, int64_t n_kv,
               float* out, void* scratch, size_t scratch_bytes) {
  constexpr const char* op = "attention";
  if (head_dim != 64 && head_dim != 80 && head_dim != 96 && head_dim != 128 && head_dim != 256) {
    fail("attention: head size {} is not supported on the GPU (64, 80, 96, 128 or 256)", head_dim);
  }
  if (n_head_kv <= 0 || n_head <= 0 || n_head % n_head_kv != 0) {
    fail("attention: {} query heads cannot share {} KV heads evenly", n_head, n_head_kv);
  }
  if (n_tokens < 0 || n_tokens * n_head > kMaxGrid / head_dim) fail("attention: {} tokens is out of range", n_tokens);
  check_cache(op, "K", k, n_head_kv * head_dim, head_dim, "head size");
  check_cache(op, "V", v, n_head_kv * head_dim, head_dim, "head size");
  if (n_tokens == 0) return;
  if (n_kv <= 0 || n_kv > k.n_rows || n_kv > v.n_rows) {
    fail("attention: {} keys do not fit caches of {} (K) and {} (V) rows", n_kv, k.n_rows, v.n_rows);
  }
  check_pointer(op, q, "q");
  check_pointer(op, out, "out");
  check_pointer(op, positions, "positions");
  check_aligned(op, q, 16, "q");
  check_aligned(op, out, 16, "out");
  const detail::AttentionKernel kernel = detail::choose_attention_kernel(n_tokens, n_head, n_head_kv, k.type, v.type);
  const detail::AttentionPlan plan = detail::plan_attention(n_tokens, n_head, n_head_kv, head_dim, n_kv, kernel);
  if (plan.scratch_bytes > 0 && (scratch == nullptr || scratch_bytes < plan.scratch_bytes)) {
    fail("attention: {} tokens over {} keys need {} bytes of scratch, got {} (size it with attention_scratch_bytes)",
         n_tokens, n_kv, plan.scratch_bytes, scratch == nullptr ? 0 : scratch_bytes);
  }
  if (plan.scratch_bytes > 0) check_aligned(op, scratch, 16, "scratch");
  detail::launch_attention(stream, q, n_tokens, n_head, n_head_kv, head_dim, k, v, positions, n_kv, out, scratch,
                           kernel);
}

}  // namespace tandem::cuda
