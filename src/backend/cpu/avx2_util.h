// Small AVX2 helpers shared by the integer dot kernels. Include only from the files that
// are compiled with -mavx2 -mfma -mf16c or wider (quant_dot_avx2.cpp, interleaved_*_avx2.cpp,
// interleaved_*_vnni.cpp). Internal linkage (the unnamed namespace): each file gets its own
// copy built with its own flags, so the linker can never hand an AVX2-only caller a copy
// compiled for AVX-512 (or the other way round) when one is not inlined.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

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
constexpr int kPrefetchDistance = 4096;
inline void prefetch_weights(const void* p, int bytes) {
  for (int line = 0; line < bytes; line += 64) {
    _mm_prefetch(static_cast<const char*>(p) + kPrefetchDistance + line, _MM_HINT_T0);
  }
}

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
