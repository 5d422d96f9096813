// Gated DeltaNet (Qwen3.5 linear-attention layers) on the GPU: the same ops, layouts and
// math as backend/cpu/delta_net.h and the DeltaNet block of model/qwen35.cpp, all in f32.
// Every function only enqueues work on `stream` (no sync, no allocation), so a decode step
// can be captured in a CUDA graph; bad arguments fail (tandem::Error) naming what is wrong.
//
// Layouts (row-major, as on the CPU): P, conv out [T][C] with C = 2*n_k*d_k + n_v*d_v;
// q, k [T][n_k][d_k]; v, o, z, y [T][n_v][d_v]; b, alpha, beta, g [T][n_v]; conv state
// [(K-1)][C] oldest first; conv taps [C][K]; recurrent state S [n_v][d_k][d_v] (row = key
// dim). Value head j reads key head j % n_k (GGUF's tiled head order).
//
// The layer, per sequence (the caller loops over the sequences of a batch, as the CPU does):
//   conv1d_silu -> delta_net_prep -> delta_rule_recurrent (T < 16) | delta_rule_chunked
//   -> gated_rms_norm.
// Prompts use the true chunked form (64-token chunks, forward substitution), not a loop of
// the recurrent kernel: the state-independent work of every chunk runs in parallel first.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/shapes.h"

namespace tandem::cuda {

using tandem::DeltaNetShape;  // backend/shapes.h

// Tokens per chunk of delta_rule_chunked (as the CPU and llama.cpp).
inline constexpr int64_t kDeltaChunk = 64;

// out[t][c] = silu(sum_j taps[c][j] * P[t - (K-1) + j][c]); inputs before this call come
// from `state_in`, and `state` gets the last K-1 inputs of [state_in | P] (state ==
// state_in: in place; otherwise state_in is left as it was). 2 <= K <= 8. out must not
// alias P or either state.
void conv1d_silu(cudaStream_t stream, const float* P, int64_t T, int64_t C, const float* taps, int64_t K,
                 const float* state_in, float* state, float* out);
inline void conv1d_silu(cudaStream_t stream, const float* P, int64_t T, int64_t C, const float* taps, int64_t K,
                        float* state, float* out) {
  conv1d_silu(stream, P, T, C, taps, K, state, state, out);
}

// state_out = the last K-1 rows of [state_in ; P[0..T)] (a speculative rollback's conv
// state; T may be 0). state_out must not overlap state_in.
void conv_state_after(cudaStream_t stream, const float* state_in, const float* P, int64_t T, int64_t C, int64_t K,
                      float* state_out);

// The elementwise prep between the conv and the delta rule, one kernel: split conv [T][C]
// into q | k | v, L2-normalise q and k per key head (divide by max(|x|, eps); q further by
// sqrt(d_k)), beta = sigmoid(b), g = a * softplus(alpha + dt_bias). beta may alias b and
// g may alias alpha. eps is the model's rms eps, as qwen35.cpp uses it.
void delta_net_prep(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* conv,
                    const float* b, const float* alpha, const float* a, const float* dt_bias, float eps,
                    float* q, float* k, float* v, float* beta, float* g);

// S_j <- exp(g_j) S_j; u = beta_j (v_j - S_j^T k); S_j += k u^T; o_j = S_j^T q, token by
// token. S stays in registers across the T tokens: read once (from state_in) and written
// once (to state) per call, so a separate output state costs no extra traffic; equal
// pointers: in place. d_k in {16, 32, 64, 128}, d_v a multiple of 8; q and k 16-byte
// aligned. out may be null (a rollback wants the state only); T = 0 copies the state.
// state_after_first, when given (a speculative verify pass), also gets the state after the
// first token, straight from the registers; it may be state_in.
void delta_rule_recurrent(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* q,
                          const float* k, const float* v, const float* g, const float* beta, const float* state_in,
                          float* state, float* out, float* state_after_first = nullptr);
inline void delta_rule_recurrent(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* q,
                                 const float* k, const float* v, const float* g, const float* beta, float* state,
                                 float* out) {
  delta_rule_recurrent(stream, shape, T, q, k, v, g, beta, state, state, out);
}

// Scratch delta_rule_chunked needs for up to max_tokens tokens (per chunk and value head:
// the cumulative decay and two 64x64 decay-weighted Gram matrices).
size_t delta_rule_chunked_scratch_bytes(const DeltaNetShape& shape, int64_t max_tokens);

// The same result by 64-token chunks (WY form, forward substitution): one kernel builds
// every chunk's decayed Q K^T and beta K K^T in parallel, a second walks the chunks in
// order per (value head, 32 state columns) with that slice of S in shared memory. Shapes
// as delta_rule_recurrent, and d_v in {8, 16} or a multiple of 32; state_in / state as there
// (out not null).
void delta_rule_chunked(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* q,
                        const float* k, const float* v, const float* g, const float* beta, const float* state_in,
                        float* state, float* out, void* scratch, size_t scratch_bytes);
inline void delta_rule_chunked(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* q,
                               const float* k, const float* v, const float* g, const float* beta, float* state,
                               float* out, void* scratch, size_t scratch_bytes) {
  delta_rule_chunked(stream, shape, T, q, k, v, g, beta, state, state, out, scratch, scratch_bytes);
}

// y = rms_norm(o; weight) * silu(z) per row of n (a value head: rows = T * n_v, n = d_v).
// y may alias o.
void gated_rms_norm(cudaStream_t stream, const float* o, const float* z, const float* weight, int64_t rows,
                    int64_t n, float eps, float* y);

namespace detail {
// Unchecked launchers (delta_net.cu); the functions above validate, then call these.
void launch_conv1d_silu(cudaStream_t stream, const float* P, int64_t T, int64_t C, const float* taps, int K,
                        const float* state_in, float* state, float* out);
void launch_conv_state_after(cudaStream_t stream, const float* state_in, const float* P, int64_t T, int64_t C,
                             int K, float* state_out);
void launch_delta_net_prep(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* conv,
                           const float* b, const float* alpha, const float* a, const float* dt_bias, float eps,
                           float* q, float* k, float* v, float* beta, float* g);
void launch_delta_rule_recurrent(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* q,
                                 const float* k, const float* v, const float* g, const float* beta,
                                 const float* state_in, float* state, float* out, float* state_after_first);
void launch_delta_rule_chunked(cudaStream_t stream, const DeltaNetShape& shape, int64_t T, const float* q,
                               const float* k, const float* v, const float* g, const float* beta,
                               const float* state_in, float* state, float* out, float* scratch);
void launch_gated_rms_norm(cudaStream_t stream, const float* o, const float* z, const float* weight, int64_t rows,
                           int64_t n, float eps, float* y);
}  // namespace detail

}  // namespace tandem::cuda
