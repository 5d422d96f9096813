#include "backend/cpu/dot_f32.h"

#include <immintrin.h>

#include "backend/cpu/dot_bf16_dp.h"
#include "backend/cpu/vec_math.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/half.h"

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

namespace {

// The portable half-precision rows: dot_f32's four partial sums, each weight widened as read.
template <float (*widen)(uint16_t)>
void dot_rows_widened(const uint16_t* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride, float* y,
                      int64_t y_stride, float bias) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* b = x + t * x_stride;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      s0 += widen(w[i]) * b[i];
      s1 += widen(w[i + 1]) * b[i + 1];
      s2 += widen(w[i + 2]) * b[i + 2];
      s3 += widen(w[i + 3]) * b[i + 3];
    }
    for (; i < n; ++i) s0 += widen(w[i]) * b[i];
    y[t * y_stride] = (s0 + s1) + (s2 + s3) + bias;
  }
}

}  // namespace

void dot_rows_f16_portable(const uint16_t* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride,
                           float* y, int64_t y_stride, float bias) {
  dot_rows_widened<f16_to_f32>(w, x, n, n_tokens, x_stride, y, y_stride, bias);
}

void dot_rows_bf16_portable(const uint16_t* w, const float* x, int64_t n, int64_t n_tokens, int64_t x_stride,
                            float* y, int64_t y_stride, float bias) {
  dot_rows_widened<bf16_to_f32>(w, x, n, n_tokens, x_stride, y, y_stride, bias);
}

namespace {

// Eight weights as f32, from each stored type. Kept in registers: no widened row is written.
struct LoadF32 {
  using T = float;
  __attribute__((target("avx2,fma,f16c"))) static __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
  static float one(const float* w) { return *w; }
};
struct LoadF16 {
  using T = uint16_t;
  __attribute__((target("avx2,fma,f16c"))) static __m256 load8(const uint16_t* w) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  }
  static float one(const uint16_t* w) { return f16_to_f32(*w); }
};
struct LoadBF16 {
  using T = uint16_t;
  __attribute__((target("avx2,fma,f16c"))) static __m256 load8(const uint16_t* w) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float one(const uint16_t* w) { return bf16_to_f32(*w); }
};

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
