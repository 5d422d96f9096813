// AVX2 dot of a row-interleaved IQ4_XS group (layout: interleaved_iq4_xs.cpp) with up to
// 8 Q8_K activation columns.
//
// Per super-block the 6-bit scales of all 8 rows are unpacked once (two loads, a few
// masks, one in-lane shuffle per sub-block, minus 32) and shared by every column. Each
// 32-byte load of codes gives, after a mask (or shift and mask) and a shuffle through the
// codebook, 4 elements of one sub-block of all 8 rows as signed bytes (-127..113).
// maddubs needs one unsigned operand. The usual maddubs(|w|, sign(a, w)), |w| shared by
// all columns, is exact for activations in -127..127 (all tandem's Q8_K quantizer makes)
// but not for -128 against a negative weight (-(-128) wraps), so a super-block whose
// columns hold a -128 (checked with one compare per 32 bytes) takes the exact, slower
// path maddubs(|a|, sign(w, a)) (|-128| is 128 as an unsigned byte, and negating a weight
// never overflows), |a| taken from each broadcast. A product pair can reach
// 2 * 128 * 127 = 32512, so two cannot be added in int16: each goes through its own madd
// with the rows' sub-block scales. Each super-block ends with one convert and FMA per
// column.
#include <immintrin.h>

#include "backend/cpu/interleaved_iq4_xs_simd.h"

namespace tandem::cpu {

using quant::BlockQ8_K;
using quant::kQK;

namespace {

using namespace iq4_xs_x8;

struct Scales {
  __m256i scale[8];  // sub-block j's scale (value - 32) in both int16 halves of lane r
};

// Adds, for columns 0..CB-1, sum_j scale[r][j] * (codes of sub-block j . activations) to
// sumi[c], row r in lane r (k4_x8::accumulate_all's Codes). kExact: some activation is
// -128, use maddubs(|a|, sign(w, a)); otherwise maddubs(|w|, sign(a, w)), with |w| shared
// by the columns (exact for activations in -127..127).
template <bool kExact>
struct Codes {
  static constexpr int kColumnBlock = 4;

  template <int CB>
  static inline void accumulate(const uint8_t* gb, const Scales& s, const BlockQ8_K* const* ab, __m256i* sumi) {
    const uint8_t* qs = gb + kQs;
    const __m256i low4 = _mm256_set1_epi8(0x0F), table = codebook(0);
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const int p = g / 2, i0 = 4 * (g % 2);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m256i bits = load256(qs + 256 * p + 32 * (i0 + k));
        const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(bits, low4));
        const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(bits, 4), low4));
        __m256i ulo, uhi;
        if constexpr (!kExact) ulo = _mm256_sign_epi8(lo, lo), uhi = _mm256_sign_epi8(hi, hi);
        for (int c = 0; c < CB; ++c) {
          const int8_t* act = ab[c]->qs + 32 * g + 4 * k;
          __m256i p_lo, p_hi;
          if constexpr (kExact) {
            const __m256i a_lo = broadcast4(act), a_hi = broadcast4(act + 16);
            p_lo = _mm256_maddubs_epi16(_mm256_abs_epi8(a_lo), _mm256_sign_epi8(lo, a_lo));
            p_hi = _mm256_maddubs_epi16(_mm256_abs_epi8(a_hi), _mm256_sign_epi8(hi, a_hi));
          } else {
            p_lo = _mm256_maddubs_epi16(ulo, _mm256_sign_epi8(broadcast4(act), lo));
            p_hi = _mm256_maddubs_epi16(uhi, _mm256_sign_epi8(broadcast4(act + 16), hi));
          }
          sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(p_lo, s.scale[g]),
                                                                _mm256_madd_epi16(p_hi, s.scale[g])));
        }
      }
    }
  }
};

template <int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* gb = group + b * kBytes;
    prefetch_weights(gb, kBytes);
    const BlockQ8_K* ab[NC];
    __m256i has_min = _mm256_setzero_si256();
    for (int c = 0; c < NC; ++c) {
      ab[c] = reinterpret_cast<const BlockQ8_K*>(a + c * a_stride) + b;
      for (int v = 0; v < kQK; v += 32) {
        has_min = _mm256_or_si256(has_min, _mm256_cmpeq_epi8(load256(ab[c]->qs + v), _mm256_set1_epi8(-128)));
      }
    }
    Scales s;
    unpack_scales(gb, s.scale);
    __m256i sumi[NC];
    for (int c = 0; c < NC; ++c) sumi[c] = _mm256_setzero_si256();
    // tandem's Q8_K quantizer keeps codes in -127..127; -128 (other producers) takes the
    // exact path.
    if (!_mm256_testz_si256(has_min, has_min)) {
      k4_x8::accumulate_all<Codes<true>, 0, NC>(gb, s, ab, sumi);
    } else {
      k4_x8::accumulate_all<Codes<false>, 0, NC>(gb, s, ab, sumi);
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb)));
    for (int c = 0; c < NC; ++c) {
      const __m256 d_a = _mm256_mul_ps(d, _mm256_set1_ps(ab[c]->d));
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[c]), d_a, acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * os, acc[c]);
}

}  // namespace

void dot_iq4_xs_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                        int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns<NC>(n, group, a, a_stride, out, out_stride); });
}

}  // namespace tandem::cpu
