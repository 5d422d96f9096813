// Vector helpers shared by the AVX2 loops of the CPU backend (each caller is itself compiled
// or attributed for AVX2+FMA and picks this path only when the CPU has it): horizontal sums
// and exp.
#pragma once

#include <immintrin.h>

namespace tandem::cpu {

// The two 128-bit halves of v added lane by lane.
__attribute__((target("avx2,fma"))) inline __m128 add_halves(__m256 v) {
  return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

// Sum of the lanes.
__attribute__((target("avx2,fma"))) inline float hsum(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) { return hsum(add_halves(v)); }

// e^x to about 2 ulp for x in [-87.33, 88]: 2^n * e^f with n = round(x / ln 2) and
// f = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 split in two so f stays exact), e^f by its
// degree-7 Taylor series in Horner form. Below -87.33 (where e^x leaves the normal
// floats) the result is 0; above 88 it is +inf (as std::exp overflows).
__attribute__((target("avx2,fma"))) inline __m256 exp_avx2(__m256 x) {
  const __m256 too_small = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33f), _CMP_LT_OQ);
  const __m256 too_large = _mm256_cmp_ps(x, _mm256_set1_ps(88.0f), _CMP_GT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 f = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  f = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-6f), f);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 e = _mm256_andnot_ps(too_small, _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n)));
  return _mm256_blendv_ps(e, _mm256_set1_ps(__builtin_inff()), too_large);
}

}  // namespace tandem::cpu
