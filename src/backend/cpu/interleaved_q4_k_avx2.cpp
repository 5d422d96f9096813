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

#include "backend/cpu/interleaved_k4.h"

namespace tandem::cpu {

using quant::BlockQ8_K;

namespace {

using k4_x8::SuperBlockScales;

struct Q4KCodes {
  static constexpr int64_t kBlockBytes = q4_k_x8::kBytes;
  static constexpr int kColumnBlock = 4;

  // Columns c0 .. c0+CB-1 of one super-block: per pair of sub-blocks (2p, 2p+1) each
  // 32-byte load of codes gives both sub-blocks' 4 elements of all 8 rows (low and high
  // nibbles), and every column of the block accumulates its int16 sums for both in registers.
  template <int CB>
  static inline void accumulate(const uint8_t* gb, const SuperBlockScales& s, const BlockQ8_K* const* ab,
                                __m256i* sumi) {
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      __m256i sum_lo[CB], sum_hi[CB];
      for (int c = 0; c < CB; ++c) sum_lo[c] = sum_hi[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        __m256i lo, hi;
        k4_x8::Q4KLoads::codes(gb, p, i, lo, hi);
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
};

}  // namespace

void dot_q4_k_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { k4_x8::dot_columns<Q4KCodes, NC>(n, group, a, a_stride, out, out_stride); });
}

}  // namespace tandem::cpu
