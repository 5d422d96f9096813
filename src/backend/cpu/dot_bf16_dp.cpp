// See dot_bf16_dp.h. Compiled once per variant (CMake: tandem_bf16_variant).
#include "backend/cpu/dot_bf16_dp.h"

#include <immintrin.h>

#include <cstring>

#if defined(TANDEM_BF16_EMULATED)
#include <simde/x86/avx512/dpbf16.h>
#endif

#ifndef TANDEM_BF16_NS
#error "dot_bf16_dp.cpp: TANDEM_BF16_NS (the variant's namespace) must be defined by the build"
#endif

namespace tandem::cpu::TANDEM_BF16_NS {
namespace {

// acc + w[2i] * x[2i] + w[2i+1] * x[2i+1] in each f32 lane i (16 bf16 pairs in, 8 sums out).
inline __m256 dpbf16(__m256 acc, __m256i w, __m256i x) {
#if defined(TANDEM_BF16_EMULATED)
  simde__m256bh a, b;
  std::memcpy(&a, &w, sizeof a);
  std::memcpy(&b, &x, sizeof b);
  return simde_mm256_dpbf16_ps(acc, a, b);
#elif defined(__AVX512BF16__) && defined(__AVX512VL__)
  return _mm256_dpbf16_ps(acc, reinterpret_cast<__m256bh&>(w), reinterpret_cast<__m256bh&>(x));
#else
#error "dot_bf16_dp.cpp: compile with -mavx512bf16 -mavx512vl, or TANDEM_BF16_EMULATED"
#endif
}

inline __m256i load16(const uint16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// bf16 -> f32 (own copy: nothing in this file may link to code shared with other files).
inline float widen(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// The elements past the last whole vector of 16.
inline float tail(const uint16_t* w, const uint16_t* x, int64_t from, int64_t n) {
  float s = 0;
  for (int64_t i = from; i < n; ++i) s += widen(w[i]) * widen(x[i]);
  return s;
}

}  // namespace

void dot_rows_bf16_dp(const uint16_t* w, const uint16_t* x, int64_t n, int64_t n_tokens, int64_t x_stride, float* y,
                      int64_t y_stride, float bias) {
  const int64_t n16 = n & ~int64_t{15};
  int64_t t = 0;
  // Four activation rows per pass: each weight vector loaded serves four.
  for (; t + 4 <= n_tokens; t += 4) {
    const uint16_t* x0 = x + t * x_stride;
    const uint16_t* x1 = x0 + x_stride;
    const uint16_t* x2 = x1 + x_stride;
    const uint16_t* x3 = x2 + x_stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n16; i += 16) {
      const __m256i wv = load16(w + i);
      a0 = dpbf16(a0, wv, load16(x0 + i));
      a1 = dpbf16(a1, wv, load16(x1 + i));
      a2 = dpbf16(a2, wv, load16(x2 + i));
      a3 = dpbf16(a3, wv, load16(x3 + i));
    }
    y[t * y_stride] = hsum8(a0) + tail(w, x0, n16, n) + bias;
    y[(t + 1) * y_stride] = hsum8(a1) + tail(w, x1, n16, n) + bias;
    y[(t + 2) * y_stride] = hsum8(a2) + tail(w, x2, n16, n) + bias;
    y[(t + 3) * y_stride] = hsum8(a3) + tail(w, x3, n16, n) + bias;
  }
  // One row at a time (decode): two chains to cover the instruction's latency.
  for (; t < n_tokens; ++t) {
    const uint16_t* xt = x + t * x_stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n16; i += 32) {
      a0 = dpbf16(a0, load16(w + i), load16(xt + i));
      a1 = dpbf16(a1, load16(w + i + 16), load16(xt + i + 16));
    }
    if (i < n16) a0 = dpbf16(a0, load16(w + i), load16(xt + i));
    y[t * y_stride] = hsum8(_mm256_add_ps(a0, a1)) + tail(w, xt, n16, n) + bias;
  }
}

}  // namespace tandem::cpu::TANDEM_BF16_NS
