// VNNI dot of a row-interleaved IQ4_XS group (layout: interleaved_iq4_xs.cpp) with up to 8
// Q8_K activation columns; compiled once per VNNI variant (vnni.h).
//
// vpdpbusd wants unsigned weights, so the codebook is looked up already shifted by 128
// (-127..113 -> 1..241): one vpshufb per load and nibble half, shared by the columns, then
// one broadcast and one vpdpbusd per load, nibble half and column add 4 elements of all 8
// rows into int32 lanes — exact for every activation, -128 included (the AVX2 kernel needs
// a sign trick and, for -128, a slower exact path). One vpmulld per sub-block and column
// applies the rows' scales (|sum| <= 32 * 241 * 128, times 32: exact in int32); the shift
// adds 128 * scale * (the sub-block's activation sum), taken off once per super-block and
// column from the activations' bsums.
#include "backend/cpu/vnni.h"

#include "backend/cpu/interleaved_iq4_xs_simd.h"

namespace tandem::cpu::TANDEM_VNNI_NS {

using quant::BlockQ8_K;
using quant::kQK;

namespace {

struct SuperBlockScales {
  __m256i scale[8];  // sub-block j's scale (-32..31) in int32 lane r
  __m256i pair[4];   // sub-blocks 2p and 2p+1 in the int16 halves of lane r
};

struct VnniCodes {
  static constexpr int kColumnBlock = 4;

  template <int CB>
  __attribute__((always_inline)) static inline void accumulate(const uint8_t* gb, const SuperBlockScales& s,
                                                               const BlockQ8_K* const* ab, __m256i* sumi) {
    const uint8_t* qs = gb + iq4_xs_x8::kQs;
    const __m256i low4 = _mm256_set1_epi8(0x0F), table = iq4_xs_x8::codebook(128);
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const int p = g / 2, i0 = 4 * (g % 2);
      __m256i sum[CB];
      for (int c = 0; c < CB; ++c) sum[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m256i bits = load256(qs + 256 * p + 32 * (i0 + k));
        const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(bits, low4));
        const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(bits, 4), low4));
        for (int c = 0; c < CB; ++c) {
          const int8_t* act = ab[c]->qs + 32 * g + 4 * k;
          sum[c] = dpbusd(sum[c], lo, broadcast4(act));
          sum[c] = dpbusd(sum[c], hi, broadcast4(act + 16));
        }
      }
      for (int c = 0; c < CB; ++c) sumi[c] = _mm256_add_epi32(sumi[c], _mm256_mullo_epi32(sum[c], s.scale[g]));
    }
  }
};

template <int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* gb = group + b * iq4_xs_x8::kBytes;
    prefetch_weights(gb, iq4_xs_x8::kBytes);
    const BlockQ8_K* ab[NC];
    for (int c = 0; c < NC; ++c) ab[c] = reinterpret_cast<const BlockQ8_K*>(a + c * a_stride) + b;
    SuperBlockScales s;
    __m256i scale16[8];
    iq4_xs_x8::unpack_scales(gb, scale16);
    for (int j = 0; j < 8; ++j) s.scale[j] = _mm256_srai_epi32(scale16[j], 16);
    for (int p = 0; p < 4; ++p) s.pair[p] = _mm256_blend_epi16(scale16[2 * p], scale16[2 * p + 1], 0xAA);
    __m256i sumi[NC];
    // Starts at -128 * sum_j scale[r][j] * (activation sum of sub-block j): the codes' shift.
    for (int c = 0; c < NC; ++c) {
      sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(k4_x8::pair_sums_dot(s.pair, *ab[c]), 7));
    }
    k4_x8::accumulate_all<VnniCodes, 0, NC>(gb, s, ab, sumi);
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb)));
    for (int c = 0; c < NC; ++c) {
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[c]), _mm256_mul_ps(d, _mm256_set1_ps(ab[c]->d)), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * os, acc[c]);
}

}  // namespace

void dot_iq4_xs_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                   int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns<NC>(n, group, a, a_stride, out, out_stride); });
}

}  // namespace tandem::cpu::TANDEM_VNNI_NS
