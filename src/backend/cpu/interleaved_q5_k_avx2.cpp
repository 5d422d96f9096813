// AVX2 dot of a row-interleaved Q5_K group (layout: interleaved_q5_k.cpp) with up to 8
// Q8_K activation columns.
//
// Scales, mins and the mins term are Q4_K's (interleaved_k4.h). Each 32-byte load of low
// nibbles gives, after a mask (or a shift and a mask), 4 elements of all 8 rows for two
// sub-blocks; the matching qh vector, shifted and masked once per sub-block, ORs their
// fifth bits on at bit 4 (codes 0..31). Every column (up to four at a time) multiplies
// them with broadcasts of its own 4 activation bytes: maddubs leaves each row's pair sums
// in its own 32-bit lane. A whole sub-block's 8 products per int16 could reach
// 8 * 2 * 31 * 128 = 63488 and overflow, so the int16 sums cover half a sub-block
// (at most 4 * 2 * 31 * 128 = 31744) and each half gets its own madd with the rows'
// sub-block scales, widening to int32.
#include <immintrin.h>

#include "backend/cpu/interleaved_k4.h"

namespace tandem::cpu {

using quant::BlockQ8_K;

namespace {

using k4_x8::SuperBlockScales;

struct Q5KCodes {
  static constexpr int64_t kBlockBytes = q5_k_x8::kBytes;
  static constexpr int kColumnBlock = 4;

  // Sub-blocks 2P and 2P+1 for columns c0 .. c0+CB-1: per half (elements 0..15 and 16..31
  // of both sub-blocks) the int16 sums of each column stay in registers, then one madd
  // per sub-block adds them to sumi with the scales.
  template <int P, int CB>
  __attribute__((always_inline)) static inline void sub_block_pair(const uint8_t* gb, const SuperBlockScales& s,
                                                                   const BlockQ8_K* const* ab, __m256i* sumi) {
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
      __m256i sum_lo[CB], sum_hi[CB];
      for (int c = 0; c < CB; ++c) sum_lo[c] = sum_hi[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const int i = 4 * half + k;
        __m256i lo, hi;
        k4_x8::Q5KLoads::codes<P>(gb, i, lo, hi);
        for (int c = 0; c < CB; ++c) {
          const int8_t* act = ab[c]->qs + 64 * P + 4 * i;
          sum_lo[c] = _mm256_add_epi16(sum_lo[c], _mm256_maddubs_epi16(lo, broadcast4(act)));
          sum_hi[c] = _mm256_add_epi16(sum_hi[c], _mm256_maddubs_epi16(hi, broadcast4(act + 32)));
          // Keeps each add next to its maddubs (as in the Q4_K kernel: otherwise GCC hoists
          // all the products first and spills them).
          asm("" : "+x"(sum_lo[c]), "+x"(sum_hi[c]));
        }
      }
      for (int c = 0; c < CB; ++c) {
        sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(sum_lo[c], s.scale[2 * P]),
                                                              _mm256_madd_epi16(sum_hi[c], s.scale[2 * P + 1])));
      }
    }
  }

  // Forced inline: left to itself GCC called it once per super-block for 1..4 columns, with
  // the sums in memory (1 column ran about 15% slower).
  template <int CB>
  __attribute__((always_inline)) static inline void accumulate(const uint8_t* gb, const SuperBlockScales& s,
                                                               const BlockQ8_K* const* ab, __m256i* sumi) {
    sub_block_pair<0, CB>(gb, s, ab, sumi);
    sub_block_pair<1, CB>(gb, s, ab, sumi);
    sub_block_pair<2, CB>(gb, s, ab, sumi);
    sub_block_pair<3, CB>(gb, s, ab, sumi);
  }
};

}  // namespace

void dot_q5_k_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { k4_x8::dot_columns<Q5KCodes, NC>(n, group, a, a_stride, out, out_stride); });
}

}  // namespace tandem::cpu
