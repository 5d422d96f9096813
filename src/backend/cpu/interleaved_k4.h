// AVX2 helpers shared by the row-interleaved Q4_K and Q5_K group dots
// (interleaved_q4_k_avx2.cpp, interleaved_q5_k_avx2.cpp): both types keep the 6-bit
// sub-block scales and mins of 8 rows in the same interleaved bytes (layout:
// interleaved_q4_k.cpp), take Q8_K activations, and differ only in how a 32-byte load of
// codes becomes 4 elements of all 8 rows. Include only from files compiled with
// -mavx2 -mfma -mf16c (or wider: the VNNI variants reuse it); internal linkage, as avx2_util.h.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/avx2_util.h"
#include "backend/cpu/interleaved.h"
#include "quant/blocks.h"

namespace tandem::cpu::k4_x8 {
namespace {

using quant::BlockQ8_K;
using quant::kQK;

// In-lane shuffle control: byte 4*j + r of each 128-bit lane (sub-block j of the lane's
// row r) goes to both int16 halves of the lane's 32-bit element r, zero-extended.
inline __m256i spread_scale(int j) {
  const auto b = [j](int r) { return static_cast<char>(4 * j + r); };
  constexpr char z = static_cast<char>(0x80);
  return _mm256_setr_epi8(b(0), z, b(0), z, b(1), z, b(1), z, b(2), z, b(2), z, b(3), z, b(3), z,  //
                          b(0), z, b(0), z, b(1), z, b(1), z, b(2), z, b(2), z, b(3), z, b(3), z);
}
// Same for the mins of sub-blocks 2p and 2p+1 (of a vector): the two int16 halves.
inline __m256i spread_min_pair(int p) {
  const auto b = [p](int j, int r) { return static_cast<char>(4 * (2 * p + j) + r); };
  constexpr char z = static_cast<char>(0x80);
  return _mm256_setr_epi8(b(0, 0), z, b(1, 0), z, b(0, 1), z, b(1, 1), z, b(0, 2), z, b(1, 2), z, b(0, 3), z,
                          b(1, 3), z, b(0, 0), z, b(1, 0), z, b(0, 1), z, b(1, 1), z, b(0, 2), z, b(1, 2), z,
                          b(0, 3), z, b(1, 3), z);
}

// The unpacked scales of one group super-block: scale[j] holds row r's sub-block scale
// in both int16 halves of 32-bit lane r; min_pair[p] the mins of sub-blocks 2p and 2p+1.
struct SuperBlockScales {
  __m256i scale[8];
  __m256i min_pair[4];
};

inline void unpack_scales(const uint8_t* gb, SuperBlockScales& s) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
  const __m256i sc_low = load256(gb + q4_k_x8::kScLow),
                mn_low = load256(gb + q4_k_x8::kMnLow), high = load256(gb + q4_k_x8::kHigh);
  // 6-bit values, 32 bytes each: byte 16*(r/4) + 4*(j%4) + r%4 for j < 4 (first) or j >= 4.
  const __m256i sc0 = _mm256_or_si256(_mm256_and_si256(sc_low, low4), _mm256_and_si256(_mm256_slli_epi16(high, 4), top2));
  const __m256i sc1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(sc_low, 4), low4),
                                      _mm256_and_si256(_mm256_slli_epi16(high, 2), top2));
  const __m256i mn0 = _mm256_or_si256(_mm256_and_si256(mn_low, low4), _mm256_and_si256(high, top2));
  const __m256i mn1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(mn_low, 4), low4),
                                      _mm256_and_si256(_mm256_srli_epi16(high, 2), top2));
  for (int j = 0; j < 4; ++j) {
    s.scale[j] = _mm256_shuffle_epi8(sc0, spread_scale(j));
    s.scale[j + 4] = _mm256_shuffle_epi8(sc1, spread_scale(j));
  }
  for (int p = 0; p < 2; ++p) {
    s.min_pair[p] = _mm256_shuffle_epi8(mn0, spread_min_pair(p));
    s.min_pair[p + 2] = _mm256_shuffle_epi8(mn1, spread_min_pair(p));
  }
}

// sum_j v[r][j] * (bsums[2j] + bsums[2j+1]) for the 8 rows, in int32 lanes, where pair[p]
// holds row r's v[2p] and v[2p+1] in the two int16 halves of lane r (the pair sums of
// bsums fit int16: at most 32 * 128).
inline __m256i pair_sums_dot(const __m256i pair[4], const BlockQ8_K& ab) {
  const __m128i sums32 = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ab.bsums)),
                                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(ab.bsums + 8)));
  const __m256i both = _mm256_broadcastsi128_si256(sums32);
  const __m256i m01 = _mm256_add_epi32(_mm256_madd_epi16(pair[0], _mm256_shuffle_epi32(both, 0x00)),
                                       _mm256_madd_epi16(pair[1], _mm256_shuffle_epi32(both, 0x55)));
  const __m256i m23 = _mm256_add_epi32(_mm256_madd_epi16(pair[2], _mm256_shuffle_epi32(both, 0xAA)),
                                       _mm256_madd_epi16(pair[3], _mm256_shuffle_epi32(both, 0xFF)));
  return _mm256_add_epi32(m01, m23);
}
// The mins term: sum_j min[r][j] * (bsums[2j] + bsums[2j+1]).
inline __m256i mins_dot(const SuperBlockScales& s, const BlockQ8_K& ab) { return pair_sums_dot(s.min_pair, ab); }

// How a type's 32-byte load becomes codes: load i (0..7) of sub-block pair P gives
// elements 4i..4i+3 of sub-block 2P (lo) and of sub-block 2P+1 (hi) for all 8 rows, one
// row per 32-bit lane, as unsigned bytes (Q4_K 0..15, Q5_K 0..31).
struct Q4KLoads {
  static constexpr int64_t kBlockBytes = q4_k_x8::kBytes;
  static inline void codes(const uint8_t* gb, int p, int i, __m256i& lo, __m256i& hi) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i bits = load256(gb + q4_k_x8::kQs + 256 * p + 32 * i);
    lo = _mm256_and_si256(bits, low4);
    hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low4);
  }
  template <int P>
  static inline void codes(const uint8_t* gb, int i, __m256i& lo, __m256i& hi) {
    codes(gb, P, i, lo, hi);
  }
};

// Bit G of each byte of h moved to bit 4, all other bits cleared (the 16-bit shifts carry
// bits across bytes, but only into bits the mask clears).
template <int G>
inline __m256i fifth_bit(__m256i h, __m256i bit4) {
  if constexpr (G < 4) {
    return _mm256_and_si256(_mm256_slli_epi16(h, 4 - G), bit4);
  } else if constexpr (G == 4) {
    return _mm256_and_si256(h, bit4);
  } else {
    return _mm256_and_si256(_mm256_srli_epi16(h, G - 4), bit4);
  }
}

// Q5_K: Q4_K's nibbles with the fifth bits of the matching qh vector ORed on at bit 4.
struct Q5KLoads {
  static constexpr int64_t kBlockBytes = q5_k_x8::kBytes;
  template <int P>
  static inline void codes(const uint8_t* gb, int i, __m256i& lo, __m256i& hi) {
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    Q4KLoads::codes(gb, P, i, lo, hi);
    const __m256i h = load256(gb + q5_k_x8::kQh + 32 * i);
    lo = _mm256_or_si256(lo, fifth_bit<2 * P>(h, bit4));
    hi = _mm256_or_si256(hi, fifth_bit<2 * P + 1>(h, bit4));
  }
};

// Columns in blocks of at most Codes::kColumnBlock: their int16 sums then stay in
// registers. With more than one block each is its own function (inlined together, GCC's
// register allocation spilled the sums of a block in its inner loop: 8 columns of Q4_K ran
// 20% slower).
//
// Codes supplies the type's part: kBlockBytes (one group super-block), kColumnBlock, and
// template <int CB> static void accumulate(gb, s, ab, sumi), which adds to sumi[c] (int32
// lanes, one per row) sum_j scale[r][j] * (codes of sub-block j . activations of column c)
// for the CB columns ab[0..CB-1] of the group super-block gb, s being the type's unpacked
// scales (SuperBlockScales for Q4_K/Q5_K; IQ4_XS's VNNI kernel has its own).
template <class Codes, int CB, class Scales>
__attribute__((noinline)) void accumulate_outlined(const uint8_t* gb, const Scales& s, const BlockQ8_K* const* ab,
                                                   __m256i* sumi) {
  Codes::template accumulate<CB>(gb, s, ab, sumi);
}
template <class Codes, int C0, int NC, class Scales>
inline void accumulate_all(const uint8_t* gb, const Scales& s, const BlockQ8_K* const* ab, __m256i* sumi) {
  constexpr int kBlock = Codes::kColumnBlock;
  if constexpr (NC <= kBlock) {
    Codes::template accumulate<NC>(gb, s, ab, sumi);
  } else {
    constexpr int CB = NC - C0 < kBlock ? NC - C0 : kBlock;
    accumulate_outlined<Codes, CB>(gb, s, ab + C0, sumi + C0);
    if constexpr (C0 + CB < NC) accumulate_all<Codes, C0 + CB, NC>(gb, s, ab, sumi);
  }
}

// The group dot for NC columns: per super-block the scales are unpacked once, the mins
// term goes through the activations' bsums, the codes through Codes; each super-block ends
// with one convert and FMA per column for the codes and one for the mins.
template <class Codes, int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  constexpr int64_t kGroupBlockBytes = Codes::kBlockBytes;
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* gb = group + b * kGroupBlockBytes;
    prefetch_weights(gb, kGroupBlockBytes);
    const BlockQ8_K* ab[NC];
    for (int c = 0; c < NC; ++c) ab[c] = reinterpret_cast<const BlockQ8_K*>(a + c * a_stride) + b;
    SuperBlockScales s;
    unpack_scales(gb, s);
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb)));
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb + q4_k_x8::kDmin)));
    // The mins term first: its registers are free again before the codes' loop.
    for (int c = 0; c < NC; ++c) {
      const __m256 dmin_a = _mm256_mul_ps(dmin, _mm256_set1_ps(ab[c]->d));
      acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins_dot(s, *ab[c])), dmin_a, acc[c]);
    }
    __m256i sumi[NC];
    for (int c = 0; c < NC; ++c) sumi[c] = _mm256_setzero_si256();
    accumulate_all<Codes, 0, NC>(gb, s, ab, sumi);
    for (int c = 0; c < NC; ++c) {
      const __m256 d_a = _mm256_mul_ps(d, _mm256_set1_ps(ab[c]->d));
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[c]), d_a, acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * os, acc[c]);
}

}  // namespace
}  // namespace tandem::cpu::k4_x8
