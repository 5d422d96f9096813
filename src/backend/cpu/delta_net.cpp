#include "backend/cpu/delta_net.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/dot_f32.h"
#include "core/cpu_features.h"
#include "core/error.h"

namespace tandem::cpu {

void conv_state_after(const float* state_in, const float* P, int64_t T, int64_t C, int64_t K, float* state_out) {
  const int64_t keep = K - 1;
  // Row r is input T - keep + r of [state_in | P]. Rows go in ascending order and row r
  // reads state_in row T + r >= r only, so state_out may alias state_in.
  for (int64_t r = 0; r < keep; ++r) {
    const int64_t at = T - keep + r;
    const float* src = at < 0 ? state_in + (keep + at) * C : P + at * C;
    if (src != state_out + r * C) std::copy(src, src + C, state_out + r * C);
  }
}

void conv1d_silu_channels(const float* P, int64_t T, int64_t C, const float* taps, int64_t K, const float* state_in,
                          int64_t c0, int64_t c1, float* out) {
  const int64_t keep = K - 1;
  // Input at relative time r (r < 0 reads the state; state row keep + r).
  auto input = [&](int64_t r, int64_t c) { return r < 0 ? state_in[(keep + r) * C + c] : P[r * C + c]; };
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = c0; c < c1; ++c) {
      float sum = 0;
      for (int64_t j = 0; j < K; ++j) sum += taps[c * K + j] * input(t - keep + j, c);
      out[t * C + c] = sum / (1.0f + std::exp(-sum));
    }
  }
}

void conv1d_silu(const float* P, int64_t T, int64_t C, const float* taps, int64_t K, const float* state_in,
                 float* state, float* out) {
  conv1d_silu_channels(P, T, C, taps, K, state_in, 0, C, out);
  conv_state_after(state_in, P, T, C, K, state);
}

void conv1d_silu(OpContext& ctx, const float* P, int64_t T, int64_t C, const float* taps, int64_t K,
                 const float* state_in, float* state, float* out) {
  // Channels in runs of 256 (whole cache lines of every row): 2 exps and K FMAs per
  // element made this a serial stretch of every DeltaNet layer.
  ctx.pool().parallel_for(
      C, [&](int, int64_t c0, int64_t c1) { conv1d_silu_channels(P, T, C, taps, K, state_in, c0, c1, out); }, 256);
  conv_state_after(state_in, P, T, C, K, state);
}

namespace {

// One token of one head, in two passes over its state block instead of four (decay, S^T k,
// the rank-1 update, S^T q): with S' = e^g S,  S'^T k = e^g (S^T k), so
//   pass 1 reads S for u = beta (v - e^g S^T k);
//   pass 2 reads S once more and writes e^g S + k u^T to `to` (and to `snapshot` when
//   given), summing o = S_new^T q as it goes.
// `from` may equal `to` and `snapshot` may equal `from`: every element is read before it is
// written. u is d_v floats of scratch; o may be null.
struct HeadStep {
  const float* from;
  float* to;
  float* snapshot;
  const float* k;
  const float* q;
  const float* v;
  float decay, beta;
  float* u;
  float* o;
};
using HeadStepFn = void (*)(const HeadStep& h, int64_t dk, int64_t dv);

void head_step_portable(const HeadStep& h, int64_t dk, int64_t dv) {
  for (int64_t c = 0; c < dv; ++c) h.u[c] = 0;
  for (int64_t i = 0; i < dk; ++i) {
    for (int64_t c = 0; c < dv; ++c) h.u[c] += h.from[i * dv + c] * h.k[i];
  }
  for (int64_t c = 0; c < dv; ++c) h.u[c] = h.beta * (h.v[c] - h.decay * h.u[c]);
  if (h.o != nullptr) {
    for (int64_t c = 0; c < dv; ++c) h.o[c] = 0;
  }
  for (int64_t i = 0; i < dk; ++i) {
    for (int64_t c = 0; c < dv; ++c) {
      const float s = h.decay * h.from[i * dv + c] + h.k[i] * h.u[c];
      h.to[i * dv + c] = s;
      if (h.snapshot != nullptr) h.snapshot[i * dv + c] = s;
      if (h.o != nullptr) h.o[c] += s * h.q[i];
    }
  }
}

// Columns c0 .. c0 + 8 * NV - 1 of pass 1 (S^T k), kept in NV registers down all d_k rows.
template <int NV>
__attribute__((target("avx2,fma"))) inline void state_times_k(const HeadStep& h, int64_t dk, int64_t dv, int64_t c0) {
  __m256 acc[NV];
  for (int j = 0; j < NV; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t i = 0; i < dk; ++i) {
    const __m256 ki = _mm256_broadcast_ss(h.k + i);
    const float* row = h.from + i * dv + c0;
    for (int j = 0; j < NV; ++j) acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(row + 8 * j), ki, acc[j]);
  }
  const __m256 decay = _mm256_set1_ps(h.decay), beta = _mm256_set1_ps(h.beta);
  for (int j = 0; j < NV; ++j) {
    const __m256 v = _mm256_loadu_ps(h.v + c0 + 8 * j);
    _mm256_storeu_ps(h.u + c0 + 8 * j, _mm256_mul_ps(beta, _mm256_fnmadd_ps(decay, acc[j], v)));
  }
}

// Columns c0 .. c0 + 8 * NV - 1 of pass 2: u and the o sums in registers down all d_k rows.
template <int NV>
__attribute__((target("avx2,fma"))) inline void update_and_read(const HeadStep& h, int64_t dk, int64_t dv, int64_t c0) {
  __m256 u[NV], o[NV];
  for (int j = 0; j < NV; ++j) u[j] = _mm256_loadu_ps(h.u + c0 + 8 * j), o[j] = _mm256_setzero_ps();
  const __m256 decay = _mm256_set1_ps(h.decay);
  for (int64_t i = 0; i < dk; ++i) {
    const __m256 ki = _mm256_broadcast_ss(h.k + i), qi = _mm256_broadcast_ss(h.q + i);
    const int64_t at = i * dv + c0;
    for (int j = 0; j < NV; ++j) {
      const __m256 s = _mm256_fmadd_ps(decay, _mm256_loadu_ps(h.from + at + 8 * j), _mm256_mul_ps(ki, u[j]));
      _mm256_storeu_ps(h.to + at + 8 * j, s);
      if (h.snapshot != nullptr) _mm256_storeu_ps(h.snapshot + at + 8 * j, s);
      o[j] = _mm256_fmadd_ps(s, qi, o[j]);
    }
  }
  if (h.o != nullptr) {
    for (int j = 0; j < NV; ++j) _mm256_storeu_ps(h.o + c0 + 8 * j, o[j]);
  }
}

// d_v a multiple of 8 (head_step picks the portable path otherwise).
__attribute__((target("avx2,fma"))) void head_step_avx2(const HeadStep& h, int64_t dk, int64_t dv) {
  int64_t c = 0;
  for (; c + 64 <= dv; c += 64) state_times_k<8>(h, dk, dv, c);
  for (; c < dv; c += 8) state_times_k<1>(h, dk, dv, c);
  c = 0;
  for (; c + 32 <= dv; c += 32) update_and_read<4>(h, dk, dv, c);
  for (; c < dv; c += 8) update_and_read<1>(h, dk, dv, c);
}

HeadStepFn best_head_step(int64_t dv) {
  static const bool avx2 = cpu_features().avx2 && cpu_features().fma;
  return avx2 && dv % 8 == 0 ? head_step_avx2 : head_step_portable;
}

}  // namespace

void delta_rule_recurrent(OpContext& ctx, const DeltaNetShape& sh, int64_t T, const float* q,
                          const float* k, const float* v, const float* g, const float* beta,
                          const float* state_in, float* state, float* out, float* state_after_first) {
  const int64_t dk = sh.d_k, dv = sh.d_v;
  const HeadStepFn step = best_head_step(dv);
  ctx.pool().parallel_for(sh.n_v, [&](int thread, int64_t begin, int64_t end) {
    float* u = ctx.row_scratch(thread);  // [d_v]
    for (int64_t j = begin; j < end; ++j) {
      const int64_t kh = j % sh.n_k;
      HeadStep h{};
      h.from = state_in + j * dk * dv;  // the first token reads state_in; the rest, the state written
      h.to = state + j * dk * dv;
      h.u = u;
      for (int64_t t = 0; t < T; ++t) {
        h.k = k + (t * sh.n_k + kh) * dk;
        h.q = q + (t * sh.n_k + kh) * dk;
        h.v = v + (t * sh.n_v + j) * dv;
        h.decay = std::exp(g[t * sh.n_v + j]);
        h.beta = beta[t * sh.n_v + j];
        // The copy a speculative rollback starts from, written in the same pass.
        h.snapshot = t == 0 && state_after_first != nullptr ? state_after_first + j * dk * dv : nullptr;
        h.o = out == nullptr ? nullptr : out + (t * sh.n_v + j) * dv;
        step(h, dk, dv);
        h.from = h.to;
      }
      if (T == 0 && state_in != state) std::copy_n(h.from, dk * dv, h.to);
    }
  });
}

namespace {

// One head, one chunk of n tokens (rows of q/k/v at stride_k / stride_v floats).
struct ChunkScratch {
  // cumulative decay [n] and its exp, K K^T and Q K^T [n][n], U [n][dv], the decayed
  // lower-triangular Q K^T [n][n], the decay-weighted U [n][dv]
  std::vector<float> gamma, egamma, KK, QK, U, A, W;
};

// The products with the state (K S0, Q S0, K^T W) and with U (A U) as small register-blocked
// matrix products (gemm_acc); the forward substitution, sequential in t, as axpys over rows
// of U; dot products of contiguous rows for K K^T and Q K^T.
void chunk_step(const DeltaNetShape& sh, int64_t n, const float* q, const float* k, const float* v,
                const float* g, const float* beta, int64_t stride_k, int64_t stride_v, int64_t stride_g,
                float* S, float* out, ChunkScratch& c) {
  static const DotRowsFn dot_rows = best_dot_rows();
  static const AxpyFn axpy = best_axpy();
  static const GemmAccFn gemm = best_gemm_acc();
  const int64_t dk = sh.d_k, dv = sh.d_v;
  c.gamma.resize(static_cast<size_t>(n));
  c.egamma.resize(static_cast<size_t>(n));
  c.KK.resize(static_cast<size_t>(n * n));
  c.QK.resize(static_cast<size_t>(n * n));
  c.A.resize(static_cast<size_t>(n * n));
  c.U.assign(static_cast<size_t>(n * dv), 0.0f);
  c.W.resize(static_cast<size_t>(n * dv));
  float running = 0;
  for (int64_t t = 0; t < n; ++t) {
    c.gamma[static_cast<size_t>(t)] = running += g[t * stride_g];
    c.egamma[static_cast<size_t>(t)] = std::exp(running);
  }
  // k_t . k_s (s < t) and q_t . k_s (s <= t).
  for (int64_t t = 0; t < n; ++t) {
    dot_rows(k + t * stride_k, k, dk, t, stride_k, c.KK.data() + t * n, 1, 0.0f);
    dot_rows(q + t * stride_k, k, dk, t + 1, stride_k, c.QK.data() + t * n, 1, 0.0f);
  }
  // Right-hand side rows u_t = beta_t (v_t - e^{gamma_t} S0^T k_t) (all t: U = K S0 first),
  // then forward substitution with Lm[t][s] = beta_t (k_t . k_s) e^{gamma_t - gamma_s}, s < t.
  gemm(n, dv, dk, k, stride_k, 1, S, dv, c.U.data(), dv);
  for (int64_t t = 0; t < n; ++t) {
    const float bt = beta[t * stride_g], et = c.egamma[static_cast<size_t>(t)];
    const float gt = c.gamma[static_cast<size_t>(t)];
    float* ut = c.U.data() + t * dv;
    const float* vt = v + t * stride_v;
    for (int64_t col = 0; col < dv; ++col) ut[col] = bt * (vt[col] - et * ut[col]);
    for (int64_t s = 0; s < t; ++s) {
      const float l = bt * c.KK[static_cast<size_t>(t * n + s)] * std::exp(gt - c.gamma[static_cast<size_t>(s)]);
      axpy(ut, -l, c.U.data() + s * dv, dv);
    }
  }
  // Outputs: o_t = e^{gamma_t} S0^T q_t + sum_{s<=t} (q_t . k_s) e^{gamma_t - gamma_s} u_s,
  // i.e. O = diag(e^gamma) Q S0 + A U with A lower-triangular.
  for (int64_t t = 0; t < n; ++t) std::fill(out + t * stride_v, out + t * stride_v + dv, 0.0f);
  gemm(n, dv, dk, q, stride_k, 1, S, dv, out, stride_v);
  for (int64_t t = 0; t < n; ++t) {
    const float et = c.egamma[static_cast<size_t>(t)], gt = c.gamma[static_cast<size_t>(t)];
    float* o = out + t * stride_v;
    for (int64_t col = 0; col < dv; ++col) o[col] *= et;
    float* at = c.A.data() + t * n;
    for (int64_t s = 0; s < n; ++s) {
      at[s] = s <= t ? c.QK[static_cast<size_t>(t * n + s)] * std::exp(gt - c.gamma[static_cast<size_t>(s)]) : 0.0f;
    }
  }
  gemm(n, dv, n, c.A.data(), n, 1, c.U.data(), dv, out, stride_v);
  // State: S = e^{gamma_n} S0 + sum_s e^{gamma_n - gamma_s} k_s u_s^T = e^{gamma_n} S0 + K^T W.
  const float gn = c.gamma[static_cast<size_t>(n - 1)], en = c.egamma[static_cast<size_t>(n - 1)];
  for (int64_t i = 0; i < dk * dv; ++i) S[i] *= en;
  for (int64_t s = 0; s < n; ++s) {
    const float w = std::exp(gn - c.gamma[static_cast<size_t>(s)]);
    const float* us = c.U.data() + s * dv;
    float* ws = c.W.data() + s * dv;
    for (int64_t col = 0; col < dv; ++col) ws[col] = w * us[col];
  }
  gemm(dk, dv, n, k, 1, stride_k, c.W.data(), dv, S, dv);
}

}  // namespace

void delta_rule_chunked(OpContext& ctx, const DeltaNetShape& sh, int64_t T, const float* q,
                        const float* k, const float* v, const float* g, const float* beta,
                        const float* state_in, float* state, float* out, int64_t chunk_size) {
  if (chunk_size <= 0) fail("delta_rule_chunked: chunk size must be positive");
  // Per-thread scratch: one head at a time per thread. Sized on first use per call; a
  // prompt-sized allocation, not a per-token one.
  std::vector<ChunkScratch> scratch(static_cast<size_t>(ctx.pool().size()));
  ctx.pool().parallel_for(sh.n_v, [&](int thread, int64_t begin, int64_t end) {
    ChunkScratch& c = scratch[static_cast<size_t>(thread)];
    for (int64_t j = begin; j < end; ++j) {
      const int64_t kh = j % sh.n_k;
      float* S = state + j * sh.d_k * sh.d_v;
      if (state_in != state) std::copy_n(state_in + j * sh.d_k * sh.d_v, sh.d_k * sh.d_v, S);
      for (int64_t t0 = 0; t0 < T; t0 += chunk_size) {
        const int64_t n = std::min(chunk_size, T - t0);
        chunk_step(sh, n, q + (t0 * sh.n_k + kh) * sh.d_k, k + (t0 * sh.n_k + kh) * sh.d_k,
                   v + (t0 * sh.n_v + j) * sh.d_v, g + t0 * sh.n_v + j, beta + t0 * sh.n_v + j,
                   sh.n_k * sh.d_k, sh.n_v * sh.d_v, sh.n_v, S, out + (t0 * sh.n_v + j) * sh.d_v, c);
      }
    }
  });
}

}  // namespace tandem::cpu
