// The frame of the row-interleaved group dots with 32-element blocks and Q8_0 activations
// whose codes are stored unsigned with an offset (layouts: interleaved_q5_0.cpp,
// interleaved_q8_0.cpp), shared by the AVX2 Q5_0 kernel and the VNNI Q5_0 and Q8_0 kernels.
//
// Per block, Codes unpacks the 8 chunks once (chunk i: elements 4i..4i+3 of all 8 rows, one
// row per 32-bit lane, as unsigned bytes = code + kOffset); for each column, Products
// multiplies them with broadcasts of the chunk's 4 activation bytes, so the column's 8 row
// sums end in one vector without a horizontal sum. The offset is taken off in integers with
// the activation block's code sum, computed once per block and column ahead of the rows'
// work: the result is exact, as the row kernel's. Include only from files compiled with
// -mavx2 -mfma -mf16c or wider; internal linkage, as avx2_util.h.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "backend/cpu/avx2_util.h"
#include "backend/cpu/interleaved.h"
#include "quant/blocks.h"

namespace tandem::cpu::block32_x8 {
namespace {

using quant::BlockQ8_0;

// Q5_0 codes (unsigned, 0..31) of a group block from its four vectors of low nibbles and
// its vector of fifth bits, for V = __m256i or __m512i (GCC vectors, so plain operators
// serve both widths).
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

template <class V>
inline void q5_0_codes(const V raw[4], V hb, V q[8]) {
  using U = typename U64Lanes<sizeof(V)>::type;
  const U low4 = U{} + 0x0F0F0F0F0F0F0F0FULL, bit4 = U{} + 0x1010101010101010ULL;
  for (int v = 0; v < 4; ++v) {
    q[v] = (V)((U)raw[v] & low4);
    q[v + 4] = (V)(((U)raw[v] >> 4) & low4);
  }
  // Fifth bit of chunk i is bit i of hb's bytes: move it to bit 4 (shifts of at most 4
  // carry bits across bytes, but never into bit 4 of a byte).
  for (int i = 0; i < 8; ++i) {
    const U h = (U)hb, moved = i < 4 ? h << (4 - i) : h >> (i - 4);
    q[i] = (V)((U)q[i] | (moved & bit4));
  }
}

// Q5_0 (group block: 8 f16 scales, 128 bytes of low nibbles, 32 bytes of fifth bits).
struct Q5_0Codes {
  static constexpr int64_t kBlockBytes = 8 * sizeof(quant::BlockQ5_0);
  static constexpr int kOffset = 16;
  static inline void unpack(const uint8_t* gb, __m256i q[8]) {
    const __m256i raw[4] = {load256(gb + 16), load256(gb + 48), load256(gb + 80), load256(gb + 112)};
    q5_0_codes(raw, load256(gb + 16 + 128), q);
  }
};

// Blocks whose activation sums are taken ahead of the rows' work (bounded stack use).
constexpr int64_t kSpan = 32;

// Products supplies static int code_sum(const int8_t* qs, int weight) (weight times the sum
// of the 32 activation codes) and static __m256i dot(const __m256i q[8], const uint8_t* aq)
// (per row: q . the 32 activation codes at aq, in int32 lanes).
// Per activation block b0..b1-1 and column: kOffset times the sum of its codes (taken off
// the unsigned-code products) and its scale, ahead of the rows' work on those blocks.
template <class Products, int NC>
inline void span_sums(const uint8_t* a, size_t a_stride, int64_t b0, int64_t b1, int k_offset,
                      int32_t offset[kSpan][NC], float scale_a[kSpan][NC]) {
  for (int c = 0; c < NC; ++c) {
    const auto* ab = reinterpret_cast<const BlockQ8_0*>(a + c * a_stride);
    for (int64_t b = b0; b < b1; ++b) {
      offset[b - b0][c] = Products::code_sum(ab[b].qs, k_offset);
      scale_a[b - b0][c] = f16(ab[b].d);
    }
  }
}

template <class Codes, class Products, int NC>
void dot_columns(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  const int64_t nb = n / 32;
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  alignas(32) int32_t offset[kSpan][NC];  // kOffset * sum of the block's activation codes
  alignas(32) float scale_a[kSpan][NC];
  for (int64_t b0 = 0; b0 < nb; b0 += kSpan) {
    const int64_t b1 = std::min(nb, b0 + kSpan);
    span_sums<Products, NC>(a, a_stride, b0, b1, Codes::kOffset, offset, scale_a);
    for (int64_t b = b0; b < b1; ++b) {
      const uint8_t* gb = group + b * Codes::kBlockBytes;
      prefetch_weights(gb, Codes::kBlockBytes);
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb)));
      __m256i q[8];
      Codes::unpack(gb, q);
      for (int c = 0; c < NC; ++c) {
        const uint8_t* aq = a + c * a_stride + b * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, qs);
        const __m256i sum = _mm256_sub_epi32(Products::dot(q, aq), _mm256_set1_epi32(offset[b - b0][c]));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, _mm256_set1_ps(scale_a[b - b0][c])), acc[c]);
      }
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out + c * os, acc[c]);
}

}  // namespace
}  // namespace tandem::cpu::block32_x8
