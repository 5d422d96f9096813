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
// lane r, from one load of sc_low and one of high (per group). W: the width (Ymm8: one
// group; Zmm16 in vnni.h: two).
template <class W = Ymm8>
inline void unpack_scales(typename W::Ptr gb, typename W::I* scale) {
  using I = typename W::I;
  const I low4 = W::set1_8(0x0F), top2 = W::set1_8(0x30);
  const I sc_low = W::load(gb, kScLow);
  // Upper lane (rows 4-7) takes bits 4-7 of each high byte down to bits 0-3.
  const I high = W::srlv32(W::load_dup128(gb, kHigh), W::widen(_mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)));
  const I sc0 = W::or_(W::and_(sc_low, low4), W::and_(W::template slli16<4>(high), top2));
  const I sc1 = W::or_(W::and_(W::template srli16<4>(sc_low), low4), W::and_(W::template slli16<2>(high), top2));
  const I bias = W::widen(_mm256_set1_epi16(32));
  for (int j = 0; j < 4; ++j) {
    scale[j] = W::sub16(W::shuffle8(sc0, W::widen(k4_x8::spread_scale(j))), bias);
    scale[j + 4] = W::sub16(W::shuffle8(sc1, W::widen(k4_x8::spread_scale(j))), bias);
  }
}

// The 16-entry codebook plus `offset` (as bytes, wrapping) in every 128-bit lane, for
// vpshufb lookups by nibble.
template <class W = Ymm8>
inline typename W::I codebook(int offset) {
  return W::bcast128(_mm_add_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kIQ4NLValues)),
                                  _mm_set1_epi8(static_cast<char>(offset))));
}

}  // namespace
}  // namespace tandem::cpu::iq4_xs_x8
