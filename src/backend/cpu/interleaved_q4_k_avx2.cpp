// AVX2 dot of a row-interleaved Q4_K group (layout: interleaved_q4_k.cpp) with up to 8
// Q8_K activation columns.
//
// Per super-block the 6-bit scales and mins of all 8 rows are unpacked once (three loads,
// a few masks, one in-lane shuffle per sub-block) and shared by every column. Each 32-byte
// load of codes then gives, after a mask (or a shift and a mask), 4 elements of all 8 rows
// of one sub-block, and every column (up to seven at a time) multiplies them with
// broadcasts of its own 4 activation bytes: maddubs leaves each row's pair sums in its own
// 32-bit lane, a sub-block's 8 products are added in int16 (at most 8 * 2 * 15 * 128 = 30720), and one
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
  static constexpr int kColumnBlock = 8;

  // Columns c0 .. c0+CB-1 of one super-block, one sub-block at a time: sub-block 2p takes
  // the low nibbles of pair p's eight 32-byte loads, sub-block 2p+1 the high ones (the
  // loads come again from L1). Each load's 4 elements of all 8 rows serve every column, whose
  // int16 sum for the sub-block stays in a register, so up to 7 columns (a verify pass of
  // 6 guesses) take one pass and pay the mask and shift that free the codes once per load
  // (with both sub-blocks' sums live, 4 columns filled the 16 registers and 5-7 columns
  // took two passes, unpacking each load twice).
  template <int CB>
  static inline void accumulate(const uint8_t* gb, const SuperBlockScales& s, const BlockQ8_K* const* ab,
                                __m256i* sumi) {
    if constexpr (CB == 8) {
      // As two blocks of 4: in one block of 8 the frame's 8 float and 8 int32 accumulators
      // joined the 8 sums, and GCC's spills made it 11% slower than 4 + 4
      // (`tandem_kernel_bench --cols`); at 2 and 5-7 columns one block is 4-15% faster.
      k4_x8::accumulate_outlined<Q4KCodes, 4>(gb, s, ab, sumi);
      k4_x8::accumulate_outlined<Q4KCodes, 4>(gb, s, ab + 4, sumi + 4);
      return;
    }
    const __m256i low4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const int p = j / 2, half = j % 2;
      __m256i sum[CB];
      for (int c = 0; c < CB; ++c) sum[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        const __m256i bits = load256(gb + q4_k_x8::kQs + 256 * p + 32 * i);
        const __m256i codes = _mm256_and_si256(half ? _mm256_srli_epi16(bits, 4) : bits, low4);
        for (int c = 0; c < CB; ++c) {
          const int8_t* act = ab[c]->qs + 64 * p + 32 * half + 4 * i;
          sum[c] = _mm256_add_epi16(sum[c], _mm256_maddubs_epi16(codes, broadcast4(act)));
          // Keeps each add next to its maddubs: otherwise GCC rebuilds the sums as trees and
          // hoists all the products first, spilling them.
          asm("" : "+x"(sum[c]));
        }
      }
      for (int c = 0; c < CB; ++c) sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(sum[c], s.scale[j]));
    }
  }
};

}  // namespace

void dot_q4_k_x8_avx2(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { k4_x8::dot_columns<Q4KCodes, NC>(n, group, a, a_stride, out, out_stride); });
}

}  // namespace tandem::cpu
