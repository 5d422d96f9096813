#include "backend/cpu/dot_f32.h"

#include <immintrin.h>

#include "backend/cpu/vec_math.h"
#include "core/cpu_features.h"

namespace tandem::cpu {

float dot_f32(const float* a, const float* b, int64_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

void dot_rows_portable(const float* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride,
                       float* y, int64_t y_stride, float bias) {
  for (int64_t t = 0; t < n_tokens; ++t) y[t * y_stride] = dot_f32(w, x + t * x_stride, n) + bias;
}

__attribute__((target("avx2,fma"))) void dot_rows_avx2(const float* w, const float* x, int64_t n,
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
      const __m256 wv = _mm256_loadu_ps(w + i);
      a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + i), a0);
      a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + i), a1);
      a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2 + i), a2);
      a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x3 + i), a3);
    }
    float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
    for (int64_t i = n8; i < n; ++i) {
      s0 += w[i] * x0[i];
      s1 += w[i] * x1[i];
      s2 += w[i] * x2[i];
      s3 += w[i] * x3[i];
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
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(xt + i), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(xt + i + 8), a1);
    }
    for (; i < n8; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(xt + i), a0);
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) s += w[i] * xt[i];
    y[t * y_stride] = s + bias;
  }
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

AxpyFn best_axpy() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma ? axpy_avx2 : axpy_portable;
}

DotRowsFn best_dot_rows() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma ? dot_rows_avx2 : dot_rows_portable;
}

}  // namespace tandem::cpu
