// Small AVX2 helpers shared by the integer dot kernels. Include only from the files that
// are compiled with -mavx2 -mfma -mf16c or wider (quant_dot_avx2.cpp, interleaved_*_avx2.cpp,
// interleaved_*_vnni.cpp). Internal linkage (the unnamed namespace): each file gets its own
// copy built with its own flags, so the linker can never hand an AVX2-only caller a copy
// compiled for AVX-512 (or the other way round) when one is not inlined.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/interleaved.h"

namespace tandem::cpu {
namespace {

inline float f16(uint16_t h) { return _cvtsh_ss(h); }

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 4 bytes at p repeated in all eight 32-bit lanes (one vpbroadcastd from memory).
inline __m256i broadcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Software prefetch of the weight bytes kPrefetchDistance ahead of those being read: in a
// decode each row streams from memory once, and the hardware prefetcher alone left about
// a third of one core's read bandwidth unused (tandem_kernel_bench --tokens 1 over a
// large --rows: Q6_K 15.8 -> 22 GMAC/s). Prefetches past the end of a tensor are harmless.
// 8 KiB, not 4: a speculative verify pass (7 columns, weights streamed once) runs 9-14%
// faster on Zen 5 (1.5B pp7 212-229 -> 240-260 tok/s); decode and long prompts unchanged.
constexpr int kPrefetchDistance = 8192;
// Always inlined: GCC takes a function holding only prefetches for one without effects and
// drops calls to it that it did not inline (the 16-row passes lost all their prefetches).
__attribute__((always_inline)) inline void prefetch_lines(const void* p, int bytes) {
  for (int line = 0; line < bytes; line += 64) _mm_prefetch(static_cast<const char*>(p) + line, _MM_HINT_T0);
}
__attribute__((always_inline)) inline void prefetch_weights(const void* p, int bytes) {
  prefetch_lines(static_cast<const char*>(p) + kPrefetchDistance, bytes);
}

// The same for a pass over two consecutive groups at once (the 16-row passes), from a
// PairStream over them (interleaved.h) and the position in the first group being read:
// each stream prefetches what it will itself read kPrefetchDistance later. (Plain
// +kPrefetchDistance from both streams would land the first stream's prefetches in the
// second group, already read, and leave the start of the next pair's second group to the
// hardware prefetcher: with groups of 4.5-7 KB, Q4_K's 16-row pass streamed at 19 GB/s
// against the 8-row pass's 42 on Zen 5.)
__attribute__((always_inline)) inline void prefetch_weight_pair(const uint8_t* pair, const PairStream& stream,
                                                                int64_t pos, int bytes) {
  const uint8_t* ahead = pair + stream.ahead(pos);
  prefetch_lines(ahead, bytes);
  prefetch_lines(ahead + stream.group_bytes, bytes);
}

// The vector width of a row-interleaved group dot, for frames written once for 8 rows
// (one group per 256-bit vector: this struct) and for 16 rows (two consecutive groups per
// 512-bit vector: Zmm16 in vnni.h). Every operation acts within 128-bit lanes (or on each
// 32-bit lane), so the rows of one group never meet those of the other and each row's
// integer and float operations are the same at both widths. Ptr addresses the group data:
// here one pointer; for two groups, the first's pointer and the offset of the second.
struct Ymm8 {
  using I = __m256i;
  using F = __m256;
  using Ptr = const uint8_t*;
  static constexpr int kRows = 8;
  static Ptr groups(const uint8_t* group, int64_t /*group_bytes*/) { return group; }
  static Ptr at(Ptr g, int64_t offset) { return g + offset; }
  static void prefetch(Ptr g, int bytes) { prefetch_weights(g, bytes); }
  static I load(Ptr g, int64_t offset) { return load256(g + offset); }
  // 16 int8 at g + offset (per group), sign-extended to int16.
  static I load_i8_as_i16(Ptr g, int64_t offset) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + offset)));
  }
  // 8 f16 at g + offset (per group), as f32.
  static F load_f16(Ptr g, int64_t offset) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + offset)));
  }
  // 16 bytes at g + offset (per group) in both 128-bit lanes.
  static I load_dup128(Ptr g, int64_t offset) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + offset)));
  }
  static I widen(__m256i v) { return v; }  // a 256-bit constant, in each group's half
  static I bcast128(__m128i v) { return _mm256_broadcastsi128_si256(v); }
  static I bcast4(const void* p) { return broadcast4(p); }
  static I set1_8(char v) { return _mm256_set1_epi8(v); }
  static I set1_32(int32_t v) { return _mm256_set1_epi32(v); }
  static I zero() { return _mm256_setzero_si256(); }
  static I and_(I a, I b) { return _mm256_and_si256(a, b); }
  static I or_(I a, I b) { return _mm256_or_si256(a, b); }
  static I add32(I a, I b) { return _mm256_add_epi32(a, b); }
  static I sub16(I a, I b) { return _mm256_sub_epi16(a, b); }
  static I sub32(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I mullo32(I a, I b) { return _mm256_mullo_epi32(a, b); }
  static I madd16(I a, I b) { return _mm256_madd_epi16(a, b); }
  static I shuffle8(I a, I control) { return _mm256_shuffle_epi8(a, control); }
  static I unpacklo16(I a, I b) { return _mm256_unpacklo_epi16(a, b); }
  static I unpackhi16(I a, I b) { return _mm256_unpackhi_epi16(a, b); }
  template <int N> static I slli16(I a) { return _mm256_slli_epi16(a, N); }
  template <int N> static I srli16(I a) { return _mm256_srli_epi16(a, N); }
  template <int N> static I slli32(I a) { return _mm256_slli_epi32(a, N); }
  template <int N> static I srai32(I a) { return _mm256_srai_epi32(a, N); }
  template <int Imm> static I shuffle32(I a) { return _mm256_shuffle_epi32(a, Imm); }
  static I srlv32(I a, I count) { return _mm256_srlv_epi32(a, count); }
  // Imm's bit i picks b's int16 i of each 128-bit lane, a's otherwise.
  template <int Imm> static I blend16(I a, I b) { return _mm256_blend_epi16(a, b, Imm); }
  static F zero_ps() { return _mm256_setzero_ps(); }
  static F set1_ps(float v) { return _mm256_set1_ps(v); }
  static F cvt(I a) { return _mm256_cvtepi32_ps(a); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static void store(float* out, F v) { _mm256_storeu_ps(out, v); }
};

// Calls fn.template operator()<NC>() with NC = n_cols (1..8), so kernels can keep one
// accumulator per column in registers.
template <typename Fn>
inline void dispatch_columns(int n_cols, Fn&& fn) {
  switch (n_cols) {
    case 1: fn.template operator()<1>(); break;
    case 2: fn.template operator()<2>(); break;
    case 3: fn.template operator()<3>(); break;
    case 4: fn.template operator()<4>(); break;
    case 5: fn.template operator()<5>(); break;
    case 6: fn.template operator()<6>(); break;
    case 7: fn.template operator()<7>(); break;
    default: fn.template operator()<8>(); break;
  }
}

}  // namespace
}  // namespace tandem::cpu
