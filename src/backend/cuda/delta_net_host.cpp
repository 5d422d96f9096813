// Argument checks of the DeltaNet ops (delta_net.h): each failure names the op and the
// argument, then the unchecked launcher in delta_net.cu enqueues the kernels.
#include <climits>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/delta_net.h"
#include "core/error.h"

namespace tandem::cuda {
namespace {

void require_pointer(const char* op, const char* name, const void* p) {
  if (p == nullptr) fail("cuda::{}: {} is null", op, name);
}

void require_aligned16(const char* op, const char* name, const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("cuda::{}: {} must be 16-byte aligned", op, name);
}

void require_tokens(const char* op, int64_t T) {
  if (T < 0 || T > INT_MAX) fail("cuda::{}: token count {} out of range [0, {}]", op, T, INT_MAX);
}

// [a, a + a_bytes) and [b, b + b_bytes) must not share a byte.
void require_disjoint(const char* op, const char* a_name, const void* a, size_t a_bytes, const char* b_name,
                      const void* b, size_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  if (pa < pb + b_bytes && pb < pa + a_bytes) fail("cuda::{}: {} overlaps {}", op, a_name, b_name);
}

void require_shape(const char* op, const DeltaNetShape& sh) {
  if (sh.n_k <= 0 || sh.n_v <= 0 || sh.d_k <= 0 || sh.d_v <= 0) {
    fail("cuda::{}: shape n_k={} n_v={} d_k={} d_v={} must be positive", op, sh.n_k, sh.n_v, sh.d_k, sh.d_v);
  }
  // Kernels index rows of a token with 32-bit head counts and a grid dimension per value head.
  if (sh.n_v > 65535 || sh.n_k > 65535 || sh.n_k * sh.d_k > INT_MAX / 4 || sh.n_v * sh.d_v > INT_MAX / 4) {
    fail("cuda::{}: shape n_k={} n_v={} d_k={} d_v={} is too large", op, sh.n_k, sh.n_v, sh.d_k, sh.d_v);
  }
}

// The delta rule kernels are compiled for these head sizes (S rows live in registers or
// a shared-memory slice sized at compile time).
void require_delta_rule_shape(const char* op, const DeltaNetShape& sh, bool chunked) {
  require_shape(op, sh);
  if (sh.d_k != 16 && sh.d_k != 32 && sh.d_k != 64 && sh.d_k != 128) {
    fail("cuda::{}: key head dim d_k = {} is not supported (16, 32, 64 or 128)", op, sh.d_k);
  }
  if (chunked) {
    if (sh.d_v != 8 && sh.d_v != 16 && sh.d_v % 32 != 0) {
      fail("cuda::{}: value head dim d_v = {} is not supported (8, 16 or a multiple of 32)", op, sh.d_v);
    }
  } else if (sh.d_v % 8 != 0) {
    fail("cuda::{}: value head dim d_v = {} is not supported (a multiple of 8)", op, sh.d_v);
  }
}

void require_delta_rule_args(const char* op, const DeltaNetShape& sh, int64_t T, const float* q, const float* k,
                             const float* v, const float* g, const float* beta, const float* state_in,
                             const float* state, const float* out, bool out_optional) {
  require_pointer(op, "q", q);
  require_pointer(op, "k", k);
  require_pointer(op, "v", v);
  require_pointer(op, "g", g);
  require_pointer(op, "beta", beta);
  require_pointer(op, "state_in", state_in);
  require_pointer(op, "state", state);
  if (!out_optional) require_pointer(op, "out", out);
  require_aligned16(op, "q", q);  // read as float4
  require_aligned16(op, "k", k);
  const size_t state_bytes = static_cast<size_t>(sh.n_v * sh.d_k * sh.d_v) * sizeof(float);
  const size_t out_bytes = static_cast<size_t>(T * sh.n_v * sh.d_v) * sizeof(float);
  if (out != nullptr) {
    require_disjoint(op, "out", out, out_bytes, "state", state, state_bytes);
    require_disjoint(op, "out", out, out_bytes, "state_in", state_in, state_bytes);
  }
  // Separate states: one block's writes must not land in another's unread input.
  if (state_in != state) require_disjoint(op, "state", state, state_bytes, "state_in", state_in, state_bytes);
}

}  // namespace

void conv1d_silu(cudaStream_t stream, const float* P, int64_t T, int64_t C, const float* taps, int64_t K,
                 const float* state_in, float* state, float* out) {
  constexpr const char* op = "conv1d_silu";
  require_tokens(op, T);
  if (C <= 0 || C > INT_MAX) fail("cuda::{}: channel count {} out of range", op, C);
  if (K < 2 || K > 8) fail("cuda::{}: conv kernel size {} is not supported (2..8)", op, K);
  // One grid row per 16 tokens, and grid.y is at most 65535.
  if (T > int64_t{65535} * 16) fail("cuda::{}: {} tokens in one call is too many (at most {})", op, T, 65535 * 16);
  if (T == 0) return;
  require_pointer(op, "P", P);
  require_pointer(op, "taps", taps);
  require_pointer(op, "state_in", state_in);
  require_pointer(op, "state", state);
  require_pointer(op, "out", out);
  const size_t io_bytes = static_cast<size_t>(T * C) * sizeof(float);
  const size_t state_bytes = static_cast<size_t>((K - 1) * C) * sizeof(float);
  // Other threads read P rows of earlier tokens and the old state while out is written.
  require_disjoint(op, "out", out, io_bytes, "P", P, io_bytes);
  require_disjoint(op, "out", out, io_bytes, "state", state, state_bytes);
  require_disjoint(op, "out", out, io_bytes, "state_in", state_in, state_bytes);
  if (state_in != state) require_disjoint(op, "state", state, state_bytes, "state_in", state_in, state_bytes);
  detail::launch_conv1d_silu(stream, P, T, C, taps, static_cast<int>(K), state_in, state, out);
}

void conv_state_after(cudaStream_t stream, const float* state_in, const float* P, int64_t T, int64_t C, int64_t K,
                      float* state_out) {
  constexpr const char* op = "conv_state_after";
  require_tokens(op, T);
  if (C <= 0 || C > INT_MAX) fail("cuda::{}: channel count {} out of range", op, C);
  if (K < 2 || K > 8) fail("cuda::{}: conv kernel size {} is not supported (2..8)", op, K);
  require_pointer(op, "state_in", state_in);
  require_pointer(op, "state_out", state_out);
  if (T > 0) require_pointer(op, "P", P);
  const size_t state_bytes = static_cast<size_t>((K - 1) * C) * sizeof(float);
  require_disjoint(op, "state_out", state_out, state_bytes, "state_in", state_in, state_bytes);
  detail::launch_conv_state_after(stream, state_in, P, T, C, static_cast<int>(K), state_out);
}

void delta_net_prep(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* conv,
                    const float* b, const float* alpha, const float* a, const float* dt_bias, float eps,
                    float* q, float* k, float* v, float* beta, float* g) {
  constexpr const char* op = "delta_net_prep";
  require_shape(op, shape);
  require_tokens(op, T);
  if (!(eps >= 0.0f)) fail("cuda::{}: eps {} must be non-negative", op, eps);
  if (T == 0) return;
  require_pointer(op, "conv", conv);
  require_pointer(op, "b", b);
  require_pointer(op, "alpha", alpha);
  require_pointer(op, "a", a);
  require_pointer(op, "dt_bias", dt_bias);
  require_pointer(op, "q", q);
  require_pointer(op, "k", k);
  require_pointer(op, "v", v);
  require_pointer(op, "beta", beta);
  require_pointer(op, "g", g);
  detail::launch_delta_net_prep(stream, shape, T, conv, b, alpha, a, dt_bias, eps, q, k, v, beta, g);
}

void delta_rule_recurrent(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* q,
                          const float* k, const float* v, const float* g, const float* beta, const float* state_in,
                          float* state, float* out, float* state_after_first) {
  constexpr const char* op = "delta_rule_recurrent";
  require_delta_rule_shape(op, shape, false);
  require_tokens(op, T);
  if (T == 0) {  // the state unchanged (a rollback that keeps no position)
    if (state_in != state) {
      require_pointer(op, "state_in", state_in);
      require_pointer(op, "state", state);
      TANDEM_CUDA_CHECK(cudaMemcpyAsync(state, state_in, static_cast<size_t>(shape.n_v * shape.d_k * shape.d_v) *
                                                             sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream));
    }
    return;
  }
  require_delta_rule_args(op, shape, T, q, k, v, g, beta, state_in, state, out, true);
  if (state_after_first == state) fail("{}: the state after the first token would be written over the result", op);
  detail::launch_delta_rule_recurrent(stream, shape, T, q, k, v, g, beta, state_in, state, out, state_after_first);
}

void delta_rule_chunked(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* q,
                        const float* k, const float* v, const float* g, const float* beta, const float* state_in,
                        float* state, float* out, void* scratch, size_t scratch_bytes) {
  constexpr const char* op = "delta_rule_chunked";
  require_delta_rule_shape(op, shape, true);
  require_tokens(op, T);
  if (T == 0) return;
  require_delta_rule_args(op, shape, T, q, k, v, g, beta, state_in, state, out, false);
  const size_t need = delta_rule_chunked_scratch_bytes(shape, T);
  if (scratch == nullptr || scratch_bytes < need) {
    fail("cuda::{}: scratch of {} bytes is too small for {} tokens (needs {}; see "
         "delta_rule_chunked_scratch_bytes)", op, scratch == nullptr ? 0 : scratch_bytes, T, need);
  }
  require_aligned16(op, "scratch", scratch);
  detail::launch_delta_rule_chunked(stream, shape, T, q, k, v, g, beta, state_in, state, out,
                                    static_cast<float*>(scratch));
}

void gated_rms_norm(cudaStream_t stream, const float* o, const float* z, const float* weight, int64_t rows,
                    int64_t n, float eps, float* y) {
  constexpr const char* op = "gated_rms_norm";
  if (rows < 0 || rows > int64_t{INT_MAX} * 8) fail("cuda::{}: row count {} out of range", op, rows);
  if (n <= 0 || n > INT_MAX) fail("cuda::{}: row length {} out of range", op, n);
  if (!(eps >= 0.0f)) fail("cuda::{}: eps {} must be non-negative", op, eps);
  if (rows == 0) return;
  require_pointer(op, "o", o);
  require_pointer(op, "z", z);
  require_pointer(op, "weight", weight);
  require_pointer(op, "y", y);
  detail::launch_gated_rms_norm(stream, o, z, weight, rows, n, eps, y);
}

}  // namespace tandem::cuda
