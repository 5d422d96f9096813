// SIMD pieces of the row-interleaved IQ4_XS group dots (layout: interleaved_iq4_xs.cpp),
// shared by the AVX2 and VNNI kernels. Include only from files compiled with -mavx2 -mfma
// -mf16c or wider; internal linkage, as avx2_util.h.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/avx2_util.h"
#include "backend/cpu/interleaved.h"
#include "backend/cpu/interleaved_k4.h"
#include "quant/blocks.h"

namespace tandem::cpu::iq4_xs_x8 {
namespace {

// scale[j]: row r's sub-block scale (value - 32, -32..31) in both int16 halves of 32-bit
// lane r, from one load of sc_low and one of high.
inline void unpack_scales(const uint8_t* gb, __m256i* scale) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
  const __m256i sc_low = load256(gb + kScLow);
  // Upper lane (rows 4-7) takes bits 4-7 of each high byte down to bits 0-3.
  const __m256i high = _mm256_srlv_epi32(
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb + kHigh))),
      _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
  const __m256i sc0 = _mm256_or_si256(_mm256_and_si256(sc_low, low4), _mm256_and_si256(_mm256_slli_epi16(high, 4), top2));
  const __m256i sc1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(sc_low, 4), low4),
                                      _mm256_and_si256(_mm256_slli_epi16(high, 2), top2));
  const __m256i bias = _mm256_set1_epi16(32);
  for (int j = 0; j < 4; ++j) {
    scale[j] = _mm256_sub_epi16(_mm256_shuffle_epi8(sc0, k4_x8::spread_scale(j)), bias);
    scale[j + 4] = _mm256_sub_epi16(_mm256_shuffle_epi8(sc1, k4_x8::spread_scale(j)), bias);
  }
}

// The 16-entry codebook plus `offset` (as bytes, wrapping) in both 128-bit lanes, for
// vpshufb lookups by nibble.
inline __m256i codebook(int offset) {
  return _mm256_add_epi8(
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kIQ4NLValues))),
      _mm256_set1_epi8(static_cast<char>(offset)));
}

}  // namespace
}  // namespace tandem::cpu::iq4_xs_x8
