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
// W: the width (Ymm8: one group; Zmm16 in vnni.h: two).
template <class W>
struct SuperBlockScalesW {
  typename W::I scale[8];
  typename W::I min_pair[4];
};
using SuperBlockScales = SuperBlockScalesW<Ymm8>;

template <class W = Ymm8>
inline void unpack_scales(typename W::Ptr gb, SuperBlockScalesW<W>& s) {
  using I = typename W::I;
  const I low4 = W::set1_8(0x0F), top2 = W::set1_8(0x30);
  const I sc_low = W::load(gb, q4_k_x8::kScLow), mn_low = W::load(gb, q4_k_x8::kMnLow),
          high = W::load(gb, q4_k_x8::kHigh);
  // 6-bit values, 32 bytes each: byte 16*(r/4) + 4*(j%4) + r%4 for j < 4 (first) or j >= 4.
  const I sc0 = W::or_(W::and_(sc_low, low4), W::and_(W::template slli16<4>(high), top2));
  const I sc1 = W::or_(W::and_(W::template srli16<4>(sc_low), low4), W::and_(W::template slli16<2>(high), top2));
  const I mn0 = W::or_(W::and_(mn_low, low4), W::and_(high, top2));
  const I mn1 = W::or_(W::and_(W::template srli16<4>(mn_low), low4), W::and_(W::template srli16<2>(high), top2));
  for (int j = 0; j < 4; ++j) {
    s.scale[j] = W::shuffle8(sc0, W::widen(spread_scale(j)));
    s.scale[j + 4] = W::shuffle8(sc1, W::widen(spread_scale(j)));
  }
  for (int p = 0; p < 2; ++p) {
    s.min_pair[p] = W::shuffle8(mn0, W::widen(spread_min_pair(p)));
    s.min_pair[p + 2] = W::shuffle8(mn1, W::widen(spread_min_pair(p)));
  }
}

// sum_j v[r][j] * (bsums[2j] + bsums[2j+1]) for the rows, in int32 lanes, where pair[p]
// holds row r's v[2p] and v[2p+1] in the two int16 halves of lane r (the pair sums of
// bsums fit int16: at most 32 * 128).
template <class W = Ymm8>
inline typename W::I pair_sums_dot(const typename W::I pair[4], const BlockQ8_K& ab) {
  const __m128i sums32 = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ab.bsums)),
                                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(ab.bsums + 8)));
  const typename W::I both = W::bcast128(sums32);
  const typename W::I m01 = W::add32(W::madd16(pair[0], W::template shuffle32<0x00>(both)),
                                     W::madd16(pair[1], W::template shuffle32<0x55>(both)));
  const typename W::I m23 = W::add32(W::madd16(pair[2], W::template shuffle32<0xAA>(both)),
                                     W::madd16(pair[3], W::template shuffle32<0xFF>(both)));
  return W::add32(m01, m23);
}
// The mins term: sum_j min[r][j] * (bsums[2j] + bsums[2j+1]).
template <class W>
inline typename W::I mins_dot(const SuperBlockScalesW<W>& s, const BlockQ8_K& ab) {
  return pair_sums_dot<W>(s.min_pair, ab);
}

// How a type's 32-byte load becomes codes: load i (0..7) of sub-block pair P gives
// elements 4i..4i+3 of sub-block 2P (lo) and of sub-block 2P+1 (hi) for all 8 rows, one
// row per 32-bit lane, as unsigned bytes (Q4_K 0..15, Q5_K 0..31).
template <class W = Ymm8>
struct Q4KLoadsW {
  using I = typename W::I;
  static constexpr int64_t kBlockBytes = q4_k_x8::kBytes;
  static inline void codes(typename W::Ptr gb, int p, int i, I& lo, I& hi) {
    const I low4 = W::set1_8(0x0F);
    const I bits = W::load(gb, q4_k_x8::kQs + 256 * p + 32 * i);
    lo = W::and_(bits, low4);
    hi = W::and_(W::template srli16<4>(bits), low4);
  }
  template <int P>
  static inline void codes(typename W::Ptr gb, int i, I& lo, I& hi) {
    codes(gb, P, i, lo, hi);
  }
};
using Q4KLoads = Q4KLoadsW<>;

// Bit G of each byte of h moved to bit 4, all other bits cleared (the 16-bit shifts carry
// bits across bytes, but only into bits the mask clears).
template <int G, class W>
inline typename W::I fifth_bit(typename W::I h, typename W::I bit4) {
  if constexpr (G < 4) {
    return W::and_(W::template slli16<4 - G>(h), bit4);
  } else if constexpr (G == 4) {
    return W::and_(h, bit4);
  } else {
    return W::and_(W::template srli16<G - 4>(h), bit4);
  }
}

// Q5_K: Q4_K's nibbles with the fifth bits of the matching qh vector ORed on at bit 4.
template <class W = Ymm8>
struct Q5KLoadsW {
  using I = typename W::I;
  static constexpr int64_t kBlockBytes = q5_k_x8::kBytes;
  template <int P>
  static inline void codes(typename W::Ptr gb, int i, I& lo, I& hi) {
    const I bit4 = W::set1_8(0x10);
    Q4KLoadsW<W>::codes(gb, P, i, lo, hi);
    const I h = W::load(gb, q5_k_x8::kQh + 32 * i);
    lo = W::or_(lo, fifth_bit<2 * P, W>(h, bit4));
    hi = W::or_(hi, fifth_bit<2 * P + 1, W>(h, bit4));
  }
};
using Q5KLoads = Q5KLoadsW<>;

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
template <class Codes, int CB, class Ptr, class Scales, class I>
__attribute__((noinline)) void accumulate_outlined(Ptr gb, const Scales& s, const BlockQ8_K* const* ab, I* sumi) {
  Codes::template accumulate<CB>(gb, s, ab, sumi);
}
template <class Codes, int C0, int NC, class Ptr, class Scales, class I>
inline void accumulate_all(Ptr gb, const Scales& s, const BlockQ8_K* const* ab, I* sumi) {
  constexpr int kBlock = Codes::kColumnBlock;
  if constexpr (NC <= kBlock) {
    Codes::template accumulate<NC>(gb, s, ab, sumi);
  } else {
    constexpr int CB = NC - C0 < kBlock ? NC - C0 : kBlock;
    accumulate_outlined<Codes, CB>(gb, s, ab + C0, sumi + C0);
    if constexpr (C0 + CB < NC) accumulate_all<Codes, C0 + CB, NC>(gb, s, ab, sumi);
  }
}

// The group dot for NC columns over W::kRows rows (one group, or with Zmm16 two
// consecutive ones): per super-block the scales are unpacked once, the mins term goes
// through the activations' bsums, the codes through Codes (whose accumulate takes W's
// Ptr, scales and vectors); each super-block ends with one convert and FMA per column for
// the codes and one for the mins. Each row's operations are the same at both widths.
template <class Codes, int NC, class W = Ymm8>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  constexpr int64_t kGroupBlockBytes = Codes::kBlockBytes;
  const typename W::Ptr groups = W::groups(group, n / kQK * kGroupBlockBytes);
  typename W::F acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = W::zero_ps();
  for (int64_t b = 0; b < n / kQK; ++b) {
    const typename W::Ptr gb = W::at(groups, b * kGroupBlockBytes);
    W::prefetch(gb, kGroupBlockBytes);
    const BlockQ8_K* ab[NC];
    for (int c = 0; c < NC; ++c) ab[c] = reinterpret_cast<const BlockQ8_K*>(a + c * a_stride) + b;
    SuperBlockScalesW<W> s;
    unpack_scales<W>(gb, s);
    const typename W::F d = W::load_f16(gb, 0), dmin = W::load_f16(gb, q4_k_x8::kDmin);
    // The mins term first: its registers are free again before the codes' loop.
    for (int c = 0; c < NC; ++c) {
      const typename W::F dmin_a = W::mul(dmin, W::set1_ps(ab[c]->d));
      acc[c] = W::fnmadd(W::cvt(mins_dot<W>(s, *ab[c])), dmin_a, acc[c]);
    }
    typename W::I sumi[NC];
    for (int c = 0; c < NC; ++c) sumi[c] = W::zero();
    accumulate_all<Codes, 0, NC>(gb, s, ab, sumi);
    for (int c = 0; c < NC; ++c) {
      const typename W::F d_a = W::mul(d, W::set1_ps(ab[c]->d));
      acc[c] = W::fmadd(W::cvt(sumi[c]), d_a, acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) W::store(out + c * os, acc[c]);
}

}  // namespace
}  // namespace tandem::cpu::k4_x8
