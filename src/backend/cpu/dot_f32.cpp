#include "backend/cpu/dot_f32.h"

#include <immintrin.h>

#include "backend/cpu/dot_bf16_dp.h"
#include "backend/cpu/vec_math.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/half.h"

namespace tandem::cpu {

namespace {

// Weights as f32, from each stored type: one at a time (portable rows, tails) and eight at
// a time in a register (AVX2 rows). No widened row is ever written.
struct LoadF32 {
  using T = float;
  static float one(const float* w) { return *w; }
  __attribute__((target("avx2,fma,f16c"))) static __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
};
struct LoadF16 {
  using T = uint16_t;
  static float one(const uint16_t* w) { return f16_to_f32(*w); }
  __attribute__((target("avx2,fma,f16c"))) static __m256 load8(const uint16_t* w) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  }
};
struct LoadBF16 {
  using T = uint16_t;
  static float one(const uint16_t* w) { return bf16_to_f32(*w); }
  __attribute__((target("avx2,fma,f16c"))) static __m256 load8(const uint16_t* w) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
};

// Portable rows: four partial sums per token (vectorisable without -ffast-math).
template <class Load>
void dot_rows_portable_of(const typename Load::T* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride,
                          float* y, int64_t y_stride, float bias) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* b = x + t * x_stride;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      s0 += Load::one(w + i) * b[i];
      s1 += Load::one(w + i + 1) * b[i + 1];
      s2 += Load::one(w + i + 2) * b[i + 2];
      s3 += Load::one(w + i + 3) * b[i + 3];
    }
    for (; i < n; ++i) s0 += Load::one(w + i) * b[i];
    y[t * y_stride] = (s0 + s1) + (s2 + s3) + bias;
  }
}

// Four activation rows per pass, so each weight vector loaded (and widened) serves four.
template <class Load>
__attribute__((target("avx2,fma,f16c"))) void dot_rows_avx2_of(const typename Load::T* w, const float* x, int64_t n,
                                                               int64_t n_tokens, int64_t x_stride, float* y,
                                                               int64_t y_stride, float bias) {
  const int64_t n8 = n & ~int64_t{7};
  int64_t t = 0;
  for (; t + 4 <= n_tokens; t += 4) {
    const float* x0 = x + t * x_stride;
    const float* x1 = x0 + x_stride;
    const float* x2 = x1 + x_stride;
    const float* x3 = x2 + x_stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n8; i += 8) {
      const __m256 wv = Load::load8(w + i);
      a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + i), a0);
      a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + i), a1);
      a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2 + i), a2);
      a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x3 + i), a3);
    }
    float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
    for (int64_t i = n8; i < n; ++i) {
      const float wi = Load::one(w + i);
      s0 += wi * x0[i];
      s1 += wi * x1[i];
      s2 += wi * x2[i];
      s3 += wi * x3[i];
    }
    y[t * y_stride] = s0 + bias;
    y[(t + 1) * y_stride] = s1 + bias;
    y[(t + 2) * y_stride] = s2 + bias;
    y[(t + 3) * y_stride] = s3 + bias;
  }
  for (; t < n_tokens; ++t) {
    const float* xt = x + t * x_stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n8; i += 16) {
      a0 = _mm256_fmadd_ps(Load::load8(w + i), _mm256_loadu_ps(xt + i), a0);
      a1 = _mm256_fmadd_ps(Load::load8(w + i + 8), _mm256_loadu_ps(xt + i + 8), a1);
    }
    for (; i < n8; i += 8) a0 = _mm256_fmadd_ps(Load::load8(w + i), _mm256_loadu_ps(xt + i), a0);
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) s += Load::one(w + i) * xt[i];
    y[t * y_stride] = s + bias;
  }
}

}  // namespace

void dot_rows_portable(const float* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride, float* y,
                       int64_t y_stride, float bias) {
  dot_rows_portable_of<LoadF32>(w, x, n, n_tokens, x_stride, y, y_stride, bias);
}

void dot_rows_f16_portable(const uint16_t* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride,
                           float* y, int64_t y_stride, float bias) {
  dot_rows_portable_of<LoadF16>(w, x, n, n_tokens, x_stride, y, y_stride, bias);
}

void dot_rows_bf16_portable(const uint16_t* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride,
                            float* y, int64_t y_stride, float bias) {
  dot_rows_portable_of<LoadBF16>(w, x, n, n_tokens, x_stride, y, y_stride, bias);
}

void dot_rows_avx2(const float* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride, float* y,
                   int64_t y_stride, float bias) {
  dot_rows_avx2_of<LoadF32>(w, x, n, n_tokens, x_stride, y, y_stride, bias);
}

void dot_rows_f16_avx2(const uint16_t* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride, float* y,
                       int64_t y_stride, float bias) {
  dot_rows_avx2_of<LoadF16>(w, x, n, n_tokens, x_stride, y, y_stride, bias);
}

void dot_rows_bf16_avx2(const uint16_t* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride, float* y,
                        int64_t y_stride, float bias) {
  dot_rows_avx2_of<LoadBF16>(w, x, n, n_tokens, x_stride, y, y_stride, bias);
}

void axpy_portable(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

__attribute__((target("avx2,fma"))) void axpy_avx2(float* y, float a, const float* x, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

void gemm_acc_portable(int64_t M, int64_t N, int64_t P, const float* a, int64_t a_row, int64_t a_col,
                       const float* b, int64_t b_stride, float* c, int64_t c_stride) {
  for (int64_t m = 0; m < M; ++m) {
    float* cm = c + m * c_stride;
    for (int64_t p = 0; p < P; ++p) {
      const float am = a[m * a_row + p * a_col];
      const float* bp = b + p * b_stride;
      for (int64_t j = 0; j < N; ++j) cm[j] += am * bp[j];
    }
  }
}

__attribute__((target("avx2,fma"))) void gemm_acc_avx2(int64_t M, int64_t N, int64_t P, const float* a,
                                                       int64_t a_row, int64_t a_col, const float* b,
                                                       int64_t b_stride, float* c, int64_t c_stride) {
  const int64_t M4 = M & ~int64_t{3}, N16 = N & ~int64_t{15};
  for (int64_t m = 0; m < M4; m += 4) {
    const float* a0 = a + m * a_row;
    const float* a1 = a0 + a_row;
    const float* a2 = a1 + a_row;
    const float* a3 = a2 + a_row;
    float* c0 = c + m * c_stride;
    for (int64_t j = 0; j < N16; j += 16) {
      __m256 acc[4][2];
      for (int r = 0; r < 4; ++r) {
        acc[r][0] = _mm256_loadu_ps(c0 + r * c_stride + j);
        acc[r][1] = _mm256_loadu_ps(c0 + r * c_stride + j + 8);
      }
      for (int64_t p = 0; p < P; ++p) {
        const __m256 b0 = _mm256_loadu_ps(b + p * b_stride + j), b1 = _mm256_loadu_ps(b + p * b_stride + j + 8);
        const int64_t at = p * a_col;
        const __m256 x0 = _mm256_broadcast_ss(a0 + at), x1 = _mm256_broadcast_ss(a1 + at);
        const __m256 x2 = _mm256_broadcast_ss(a2 + at), x3 = _mm256_broadcast_ss(a3 + at);
        acc[0][0] = _mm256_fmadd_ps(x0, b0, acc[0][0]);
        acc[0][1] = _mm256_fmadd_ps(x0, b1, acc[0][1]);
        acc[1][0] = _mm256_fmadd_ps(x1, b0, acc[1][0]);
        acc[1][1] = _mm256_fmadd_ps(x1, b1, acc[1][1]);
        acc[2][0] = _mm256_fmadd_ps(x2, b0, acc[2][0]);
        acc[2][1] = _mm256_fmadd_ps(x2, b1, acc[2][1]);
        acc[3][0] = _mm256_fmadd_ps(x3, b0, acc[3][0]);
        acc[3][1] = _mm256_fmadd_ps(x3, b1, acc[3][1]);
      }
      for (int r = 0; r < 4; ++r) {
        _mm256_storeu_ps(c0 + r * c_stride + j, acc[r][0]);
        _mm256_storeu_ps(c0 + r * c_stride + j + 8, acc[r][1]);
      }
    }
    // Columns past the last 16: the portable loop on this block of rows.
    if (N16 < N) gemm_acc_portable(4, N - N16, P, a0, a_row, a_col, b + N16, b_stride, c0 + N16, c_stride);
  }
  if (M4 < M) gemm_acc_portable(M - M4, N, P, a + M4 * a_row, a_row, a_col, b, b_stride, c + M4 * c_stride, c_stride);
}

GemmAccFn best_gemm_acc() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma ? gemm_acc_avx2 : gemm_acc_portable;
}

AxpyFn best_axpy() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma ? axpy_avx2 : axpy_portable;
}

DotRowsFn best_dot_rows() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma ? dot_rows_avx2 : dot_rows_portable;
}

void round_to_bf16(const float* x, int64_t n_tokens, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n_tokens * n; ++i) out[i] = f32_to_bf16(x[i]);
}

Bf16DotRowsFn native_dot_rows_bf16_dp() {
  const CpuFeatures& f = cpu_features();
  return f.avx512bf16 && f.avx512vl ? avx512_bf16::dot_rows_bf16_dp : nullptr;
}

HalfDotRowsFn best_dot_rows_half(DType weight) {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  switch (weight) {
    case DType::F16: return avx2 ? dot_rows_f16_avx2 : dot_rows_f16_portable;
    case DType::BF16: return avx2 ? dot_rows_bf16_avx2 : dot_rows_bf16_portable;
    default: fail("best_dot_rows_half: {} is not a half-precision type", dtype_info(weight).name);
  }
}

}  // namespace tandem::cpu
