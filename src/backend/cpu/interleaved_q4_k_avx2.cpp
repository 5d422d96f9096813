// AVX2 dot of a row-interleaved Q4_K group (layout: interleaved_q4_k.cpp) with up to 8
// Q8_K activation columns.
//
// Per super-block the 6-bit scales and mins of all 8 rows are unpacked once (three loads,
// a few masks, one in-lane shuffle per sub-block) and shared by every column. Each 32-byte
// load of codes then gives, after a mask and a shift, 4 elements of all 8 rows for two
// sub-blocks, and every column (up to four at a time) multiplies them with broadcasts of
// its own 4 activation bytes: maddubs leaves each row's pair sums in its own 32-bit lane,
// a sub-block's 8 products are added in int16 (at most 8 * 2 * 15 * 128 = 30720), and one
// madd with the rows' sub-block scales widens them to int32 — no horizontal sums. Mins go
// through the activations' bsums, also in integers; each super-block ends with one
// convert and FMA per column for the codes and one for the mins.
#include <immintrin.h>

#include "backend/cpu/avx2_util.h"
#include "backend/cpu/interleaved.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockQ4_K;
using quant::BlockQ8_K;
using quant::kQK;

namespace {

using namespace q4_k_x8;
constexpr int64_t kGroupBlockBytes = kBytes;

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
  const __m256i sc_low = load256(gb + kScLow), mn_low = load256(gb + kMnLow), high = load256(gb + kHigh);
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

// sum_j min[r][j] * (bsums[2j] + bsums[2j+1]) for the 8 rows, in int32 lanes (the pair
// sums of bsums fit int16: at most 32 * 128).
inline __m256i mins_dot(const SuperBlockScales& s, const BlockQ8_K& ab) {
  const __m128i sums32 = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ab.bsums)),
                                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(ab.bsums + 8)));
  const __m256i both = _mm256_broadcastsi128_si256(sums32);
  const __m256i m01 = _mm256_add_epi32(_mm256_madd_epi16(s.min_pair[0], _mm256_shuffle_epi32(both, 0x00)),
                                       _mm256_madd_epi16(s.min_pair[1], _mm256_shuffle_epi32(both, 0x55)));
  const __m256i m23 = _mm256_add_epi32(_mm256_madd_epi16(s.min_pair[2], _mm256_shuffle_epi32(both, 0xAA)),
                                       _mm256_madd_epi16(s.min_pair[3], _mm256_shuffle_epi32(both, 0xFF)));
  return _mm256_add_epi32(m01, m23);
}

// Columns c0 .. c0+CB-1 of one super-block: per pair of sub-blocks (2p, 2p+1) each 32-byte
// load of codes gives both sub-blocks' 4 elements of all 8 rows (low and high nibbles),
// and every column of the block accumulates its int16 sums for both in registers.
template <int CB>
inline void accumulate_columns(const uint8_t* qs, const SuperBlockScales& s, const BlockQ8_K* const* ab,
                               __m256i* sumi) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    __m256i sum_lo[CB], sum_hi[CB];
    for (int c = 0; c < CB; ++c) sum_lo[c] = sum_hi[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const __m256i bits = load256(qs + 256 * p + 32 * i);
      const __m256i lo = _mm256_and_si256(bits, low4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low4);
      for (int c = 0; c < CB; ++c) {
        const int8_t* act = ab[c]->qs + 64 * p + 4 * i;
        sum_lo[c] = _mm256_add_epi16(sum_lo[c], _mm256_maddubs_epi16(lo, broadcast4(act)));
        sum_hi[c] = _mm256_add_epi16(sum_hi[c], _mm256_maddubs_epi16(hi, broadcast4(act + 32)));
        // Keeps each add next to its maddubs: otherwise GCC rebuilds the sums as trees and
        // hoists all the products first, spilling them (4 columns ran 30% slower).
        asm("" : "+x"(sum_lo[c]), "+x"(sum_hi[c]));
      }
    }
    for (int c = 0; c < CB; ++c) {
      sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(sum_lo[c], s.scale[2 * p]),
                                                            _mm256_madd_epi16(sum_hi[c], s.scale[2 * p + 1])));
    }
  }
}

// Columns in blocks of at most kColumnBlock: their int16 sums then stay in registers.
// With more than one block each is its own function (inlined together, GCC's register
// allocation spilled the sums of a block in its inner loop: 8 columns ran 20% slower).
constexpr int kColumnBlock = 4;
template <int CB>
__attribute__((noinline)) void accumulate_columns_outlined(const uint8_t* qs, const SuperBlockScales& s,
                                                           const BlockQ8_K* const* ab, __m256i* sumi) {
  accumulate_columns<CB>(qs, s, ab, sumi);
}
template <int C0, int NC>
inline void accumulate_all(const uint8_t* qs, const SuperBlockScales& s, const BlockQ8_K* const* ab, __m256i* sumi) {
  if constexpr (NC <= kColumnBlock) {
    accumulate_columns<NC>(qs, s, ab, sumi);
  } else {
    constexpr int CB = NC - C0 < kColumnBlock ? NC - C0 : kColumnBlock;
    accumulate_columns_outlined<CB>(qs, s, ab + C0, sumi + C0);
    if constexpr (C0 + CB < NC) accumulate_all<C0 + CB, NC>(qs, s, ab, sumi);
  }
}

template <int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
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
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb + kDmin)));
    // The mins term first: its registers are free again before the codes' loop.
    for (int c = 0; c < NC; ++c) {
      const __m256 dmin_a = _mm256_mul_ps(dmin, _mm256_set1_ps(ab[c]->d));
      acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins_dot(s, *ab[c])), dmin_a, acc[c]);
    }
    __m256i sumi[NC];
    for (int c = 0; c < NC; ++c) sumi[c] = _mm256_setzero_si256();
    accumulate_all<0, NC>(gb + kQs, s, ab, sumi);
    for (int c = 0; c < NC; ++c) {
      const __m256 d_a = _mm256_mul_ps(d, _mm256_set1_ps(ab[c]->d));
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[c]), d_a, acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * os, acc[c]);
}

}  // namespace

void dot_q4_k_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns<NC>(n, group, a, a_stride, out, out_stride); });
}

}  // namespace tandem::cpu
