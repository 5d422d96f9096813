// Gated DeltaNet (Qwen3.5 linear-attention layers) on the CPU: the causal depthwise conv
// with carried state, and the gated delta rule in two forms that are algebraically
// identical: token by token (decode) and chunked (prompts). All math in f32.
//
// Layouts: q, k [T][n_k][d_k] (q already L2-normalised and scaled by 1/sqrt(d_k), k
// L2-normalised); v, out [T][n_v][d_v]; g, beta [T][n_v]; state S [n_v][d_k][d_v] (row =
// key dim). Value head j reads key head j % n_k (GGUF's tiled head order).
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"

namespace tandem::cpu {

using tandem::DeltaNetShape;  // backend/backend.h

// out[t][c] = silu(sum_j taps[c][j] * P[t - (K-1) + j][c]) where inputs before this call
// come from `state_in` ([(K-1)][C], oldest first, raw P). `state` gets the last K-1 inputs
// (state == state_in: in place; otherwise state_in is left as it was). taps is [C][K]
// (tap 0 multiplies the oldest input).
void conv1d_silu(const float* P, int64_t T, int64_t C, const float* taps, int64_t K, const float* state_in,
                 float* state, float* out);
inline void conv1d_silu(const float* P, int64_t T, int64_t C, const float* taps, int64_t K, float* state,
                        float* out) {
  conv1d_silu(P, T, C, taps, K, state, state, out);
}
// The same with the channels split across the pool (the same operations per element).
void conv1d_silu(OpContext& ctx, const float* P, int64_t T, int64_t C, const float* taps, int64_t K,
                 const float* state_in, float* state, float* out);
// Only channels c0..c1 of out; no state update.
void conv1d_silu_channels(const float* P, int64_t T, int64_t C, const float* taps, int64_t K, const float* state_in,
                          int64_t c0, int64_t c1, float* out);

// The conv state after T more inputs P [T][C]: the last K-1 rows of [state_in ; P].
// state_out may equal state_in.
void conv_state_after(const float* state_in, const float* P, int64_t T, int64_t C, int64_t K, float* state_out);

// S_j <- exp(g_j) S_j; u = beta_j (v_j - S_j^T k); S_j += k u^T; o_j = S_j^T q, token by token.
// The state is read from state_in and the result written to state (equal: in place; else
// the first token reads state_in's block and writes state's, so memory traffic is the same).
// Each token is two passes over a head's block (AVX2+FMA where d_v is a multiple of 8).
// out may be null (a rollback re-runs the state's recurrence only). state_after_first, when
// given (a speculative verify pass), also gets the state after the first token; it may be
// state_in (each head's block is read before it is overwritten).
void delta_rule_recurrent(OpContext& ctx, const DeltaNetShape& shape, int64_t T, const float* q,
                          const float* k, const float* v, const float* g, const float* beta,
                          const float* state_in, float* state, float* out, float* state_after_first = nullptr);
inline void delta_rule_recurrent(OpContext& ctx, const DeltaNetShape& shape, int64_t T, const float* q,
                                 const float* k, const float* v, const float* g, const float* beta, float* state,
                                 float* out) {
  delta_rule_recurrent(ctx, shape, T, q, k, v, g, beta, state, state, out);
}

// The same result computed chunk by chunk (chunk_size tokens at a time) with the WY-style
// forward substitution, so a prompt costs O(T * chunk * d) instead of T sequential steps.
// state_in / state as delta_rule_recurrent.
void delta_rule_chunked(OpContext& ctx, const DeltaNetShape& shape, int64_t T, const float* q,
                        const float* k, const float* v, const float* g, const float* beta,
                        const float* state_in, float* state, float* out, int64_t chunk_size = 64);
inline void delta_rule_chunked(OpContext& ctx, const DeltaNetShape& shape, int64_t T, const float* q,
                               const float* k, const float* v, const float* g, const float* beta, float* state,
                               float* out, int64_t chunk_size = 64) {
  delta_rule_chunked(ctx, shape, T, q, k, v, g, beta, state, state, out, chunk_size);
}

}  // namespace tandem::cpu
