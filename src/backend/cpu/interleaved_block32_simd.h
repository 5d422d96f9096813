// The frames of the row-interleaved group dots with 32-element blocks and Q8_0 activations
// (layouts: interleaved_q4_0.cpp for Q4_0 and IQ4_NL, interleaved_q5_0.cpp,
// interleaved_q8_0.cpp).
//
// dot_columns, for codes stored unsigned with an offset: the AVX2 Q4_0 and Q5_0 kernels and
// every VNNI kernel of these types.
// Per block, Codes unpacks the 8 chunks once (chunk i: elements 4i..4i+3 of all 8 rows, one
// row per 32-bit lane, as unsigned bytes = code + kOffset); for each column, Products
// multiplies them with broadcasts of the chunk's 4 activation bytes, so the column's 8 row
// sums end in one vector without a horizontal sum. The offset is taken off in integers with
// the activation block's code sum, computed once per block and column ahead of the rows'
// work: the result is exact, as the row kernel's.
//
// dot_columns_signed, for signed weights on AVX2 (Q8_0, IQ4_NL), whose products with
// unsigned codes would not fit maddubs's 16-bit pair sums: per block the chunks' absolute
// values are taken once, and each column's activations get the weights' signs.
//
// Include only from files compiled with -mavx2 -mfma -mf16c or wider; internal linkage, as
// avx2_util.h.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "backend/cpu/avx2_util.h"
#include "backend/cpu/interleaved.h"
#include "backend/cpu/quant_dot.h"
#include "quant/blocks.h"

namespace tandem::cpu::block32_x8 {
namespace {

using quant::BlockQ8_0;

template <size_t Bytes>
struct U64Lanes;  // the unsigned 64-bit-lane GCC vector of that many bytes
template <>
struct U64Lanes<32> {
  typedef unsigned long long type __attribute__((vector_size(32)));
};
template <>
struct U64Lanes<64> {
  typedef unsigned long long type __attribute__((vector_size(64)));
};

// The codes (unsigned, 0..15) of a Q4_0/IQ4_NL group block from its four vectors of
// nibbles (chunk v in the low nibbles of raw[v], chunk v+4 in the high ones), for V =
// __m256i or __m512i (GCC vectors, so plain operators serve both widths).
template <class V>
inline void nibble_codes(const V raw[4], V q[8]) {
  using U = typename U64Lanes<sizeof(V)>::type;
  const U low4 = U{} + 0x0F0F0F0F0F0F0F0FULL;
  for (int v = 0; v < 4; ++v) {
    q[v] = (V)((U)raw[v] & low4);
    q[v + 4] = (V)(((U)raw[v] >> 4) & low4);
  }
}

// Q5_0 codes (unsigned, 0..31): the nibble codes q with the fifth bits from hb ORed on.
template <class V>
inline void add_fifth_bits(V hb, V q[8]) {
  using U = typename U64Lanes<sizeof(V)>::type;
  const U bit4 = U{} + 0x1010101010101010ULL;
  // Fifth bit of chunk i is bit i of hb's bytes: move it to bit 4 (shifts of at most 4
  // carry bits across bytes, but never into bit 4 of a byte).
  for (int i = 0; i < 8; ++i) {
    const U h = (U)hb, moved = i < 4 ? h << (4 - i) : h >> (i - 4);
    q[i] = (V)((U)q[i] | (moved & bit4));
  }
}

// Q4_0 (group block: 8 f16 scales, 128 bytes of nibbles): codes 0..15, offset 8.
struct Q4_0Codes {
  static constexpr int64_t kBlockBytes = 8 * sizeof(quant::BlockQ4_0);
  static constexpr int kOffset = 8;
  static inline void unpack(const uint8_t* gb, __m256i q[8]) {
    const __m256i raw[4] = {load256(gb + 16), load256(gb + 48), load256(gb + 80), load256(gb + 112)};
    nibble_codes(raw, q);
  }
};

// Q5_0 (Q4_0's group block followed by 32 bytes of fifth bits): codes 0..31, offset 16.
struct Q5_0Codes {
  static constexpr int64_t kBlockBytes = 8 * sizeof(quant::BlockQ5_0);
  static constexpr int kOffset = 16;
  static inline void unpack(const uint8_t* gb, __m256i q[8]) {
    Q4_0Codes::unpack(gb, q);
    add_fifth_bits(load256(gb + 16 + 128), q);
  }
};

// kIQ4NLValues in both 128-bit lanes (a pshufb table).
inline __m256i iq4_nl_values() {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kIQ4NLValues)));
}

// IQ4_NL (Q4_0's group block; a code indexes kIQ4NLValues): the values + 128 (1..241),
// offset 128, for the VNNI kernels (vpdpbusd sums four products in 32 bits: no overflow).
struct IQ4_NLCodes {
  static constexpr int64_t kBlockBytes = 8 * sizeof(quant::BlockIQ4_NL);
  static constexpr int kOffset = 128;
  static inline __m256i table() {  // + 128 (mod 256)
    return _mm256_xor_si256(iq4_nl_values(), _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static inline void unpack(const uint8_t* gb, __m256i q[8]) {
    Q4_0Codes::unpack(gb, q);
    const __m256i t = table();
    for (int i = 0; i < 8; ++i) q[i] = _mm256_shuffle_epi8(t, q[i]);
  }
};

// maddubs gives each row's pair sums of unsigned codes (at most 31) and activations in its
// own lanes; four chunks add in 16 bits (4 * 2 * 31 * 128 < 2^15) and one madd widens them.
struct MaddubsProducts {
  static inline __m256i dot(const __m256i q[8], const uint8_t* aq) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i p[8];
    for (int i = 0; i < 8; ++i) p[i] = _mm256_maddubs_epi16(q[i], broadcast4(aq + 4 * i));
    const __m256i s0 = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
    const __m256i s1 = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
    return _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones));
  }
};

// Blocks whose activation sums are taken ahead of the rows' work (bounded stack use).
constexpr int64_t kSpan = 32;

// Products supplies static __m256i dot(const __m256i q[8], const uint8_t* aq) (per row:
// q . the 32 activation codes at aq, in int32 lanes).
// Per column and activation block b0..b1-1 (b0 a multiple of kSpan): kOffset times the sum
// of its codes (taken off the unsigned-code products) and its scale, ahead of the rows'
// work on those blocks, 8 blocks per load from the row's tail (quant_dot.h).
template <int NC>
inline void span_sums(int64_t n, const uint8_t* a, size_t a_stride, int64_t b0, int64_t b1, int k_offset,
                      int32_t offset[NC][kSpan], float scale_a[NC][kSpan]) {
  const __m256i k = _mm256_set1_epi32(k_offset);
  for (int c = 0; c < NC; ++c) {
    const uint8_t* sums = a + c * a_stride + q8_0_sums_offset(n);
    const uint8_t* scales = a + c * a_stride + q8_0_scales_offset(n);
    // b1 - b0 rounded up to 8 stays within kSpan (b0 is a multiple of it), and the lists are
    // padded to whole 8-block loads: the lanes past b1 are never read back.
    for (int64_t b = b0; b < b1; b += 8) {
      const __m128i s16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sums + 2 * b));
      const __m128i d16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + 2 * b));
      _mm256_store_si256(reinterpret_cast<__m256i*>(offset[c] + (b - b0)), _mm256_mullo_epi32(_mm256_cvtepi16_epi32(s16), k));
      _mm256_store_ps(scale_a[c] + (b - b0), _mm256_cvtph_ps(d16));
    }
  }
}

template <class Codes, class Products, int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  const int64_t nb = n / 32;
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  alignas(32) int32_t offset[NC][kSpan];  // kOffset * sum of the block's activation codes
  alignas(32) float scale_a[NC][kSpan];
  for (int64_t b0 = 0; b0 < nb; b0 += kSpan) {
    const int64_t b1 = std::min(nb, b0 + kSpan);
    span_sums<NC>(n, a, a_stride, b0, b1, Codes::kOffset, offset, scale_a);
    for (int64_t b = b0; b < b1; ++b) {
      const uint8_t* gb = group + b * Codes::kBlockBytes;
      prefetch_weights(gb, Codes::kBlockBytes);
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb)));
      __m256i q[8];
      Codes::unpack(gb, q);
      for (int c = 0; c < NC; ++c) {
        const uint8_t* aq = a + c * a_stride + b * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, qs);
        const __m256i sum = _mm256_sub_epi32(Products::dot(q, aq), _mm256_set1_epi32(offset[c][b - b0]));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, _mm256_set1_ps(scale_a[c][b - b0])), acc[c]);
      }
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * os, acc[c]);
}

// Signed weights for dot_columns_signed: Q8_0's stored chunks, IQ4_NL's values.
struct Q8_0Signed {
  static constexpr int64_t kBlockBytes = 8 * sizeof(quant::BlockQ8_0);
  static inline void load(const uint8_t* gb, __m256i w[8]) {
    for (int i = 0; i < 8; ++i) w[i] = load256(gb + 16 + 32 * i);
  }
};
struct IQ4_NLSigned {
  static constexpr int64_t kBlockBytes = 8 * sizeof(quant::BlockIQ4_NL);
  static inline void load(const uint8_t* gb, __m256i w[8]) {
    Q4_0Codes::unpack(gb, w);
    const __m256i t = iq4_nl_values();
    for (int i = 0; i < 8; ++i) w[i] = _mm256_shuffle_epi8(t, w[i]);
  }
};

// Weights at most 127 in magnitude (maddubs's pair sums reach 2 * 127 * 127, so each is
// widened before adding).
template <class Signed, int NC>
void dot_columns_signed(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  const int64_t nb = n / 32;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* gb = group + b * Signed::kBlockBytes;
    prefetch_weights(gb, Signed::kBlockBytes);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb)));
    __m256i w[8], uw[8];
    Signed::load(gb, w);
    for (int i = 0; i < 8; ++i) uw[i] = _mm256_sign_epi8(w[i], w[i]);
    for (int c = 0; c < NC; ++c) {
      const auto* ab = reinterpret_cast<const BlockQ8_0*>(a + c * a_stride) + b;
      __m256i sum = _mm256_setzero_si256();
      for (int i = 0; i < 8; ++i) {
        const __m256i p = _mm256_maddubs_epi16(uw[i], _mm256_sign_epi8(broadcast4(ab->qs + 4 * i), w[i]));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, ones));
      }
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, _mm256_set1_ps(f16(ab->d))), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * os, acc[c]);
}

// A GroupDot (interleaved.h) of either frame: the column count picks the instance.
template <class Codes, class Products>
void group_dot(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out, int64_t os) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns<Codes, Products, NC>(n, group, a, a_stride, out, os); });
}
template <class Signed>
void group_dot_signed(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t os) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns_signed<Signed, NC>(n, group, a, a_stride, out, os); });
}

}  // namespace
}  // namespace tandem::cpu::block32_x8
