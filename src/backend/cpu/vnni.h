// The one instruction the VNNI group dots are built on: vpdpbusd, which multiplies 4
// unsigned bytes by 4 signed bytes per 32-bit lane and adds the sum to the lane in int32 —
// AVX2's maddubs + madd + add (three uops, an int16 stage to keep below saturation) in one.
//
// The VNNI kernels (interleaved_<type>_vnni.cpp) are compiled three times, each time into
// its own namespace (TANDEM_VNNI_NS, set by CMake), so one binary carries every variant:
//   avx_vnni      -mavx2 -mfma -mf16c -mavxvnni: the VEX form (Intel Alder Lake and later
//                 desktop CPUs, which have no AVX-512)
//   avx512_vnni   + -mavx512f/bw/vl/vnni: the EVEX form on 256-bit vectors (AMD Zen 4/5,
//                 Intel Ice Lake and later Xeons), with 32 vector registers. 256 bits
//                 because the group layout (interleaved.h) is one 32-byte vector per load
//                 and client cores and Zen 4 retire 64 bytes of vpdpbusd per cycle either
//                 way; Xeons with two 512-bit units issue a zmm at the ymm rate, which the
//                 16-row passes (dot_x16, interleaved_block32_vnni.cpp) use.
//   vnni_emulated -mavx2 only, vpdpbusd from SIMDe (tests only): the same source runs on
//                 a CPU without VNNI, so every line of the kernels is tested on any machine.
// Everything the kernels share with other files is internal to the translation unit
// (avx2_util.h, interleaved_k4.h): an inline copy compiled with AVX-512 flags must never
// be the one another file's code links to.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/avx2_util.h"

#if defined(TANDEM_VNNI_EMULATED)
#include <simde/x86/avx512/dpbusd.h>
#endif

#ifndef TANDEM_VNNI_NS
#error "vnni.h: TANDEM_VNNI_NS (the variant's namespace) must be defined by the build"
#endif

namespace tandem::cpu::TANDEM_VNNI_NS {
namespace {

// acc + (sum of u8[4i..4i+3] * s8[4i..4i+3]) in each 32-bit lane i, exact in int32.
// Emulated, one out-of-line call: SIMDe's long sequence inlined at every use made GCC take
// over ten minutes on the 16-row K-quant frames.
#if defined(TANDEM_VNNI_EMULATED)
__attribute__((noinline))
#endif
inline __m256i dpbusd(__m256i acc, __m256i u8, __m256i s8) {
#if defined(TANDEM_VNNI_EMULATED)
  return simde_mm256_dpbusd_epi32(acc, u8, s8);
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u8, s8);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(acc, u8, s8);
#else
#error "vnni.h: compile with -mavxvnni, -mavx512vnni -mavx512vl, or TANDEM_VNNI_EMULATED"
#endif
}

#if defined(TANDEM_VNNI_EMULATED) || defined(__AVX512F__)
#define TANDEM_VNNI_X16 1
// Two consecutive groups (16 rows) per vector, the first group's 8 rows in the low 256
// bits (the width traits of avx2_util.h's Ymm8, for the 16-row passes). Natively a zmm;
// emulated, the two 256-bit halves side by side, each operation applied to both: every
// operation here acts within 128-bit lanes, so that is the zmm instruction's result, and
// the 16-row frames run, line for line, on a CPU without AVX-512.
struct Zmm16 {
  struct Ptr {
    const uint8_t* p;
    int64_t next;         // bytes from the first group's data to the second's
    int64_t pos;          // bytes from the first group's start to p (for the prefetch)
    PairStream stream;    // the prefetch's targets
  };
  static constexpr int kRows = 16;
  static Ptr groups(const uint8_t* group, int64_t group_bytes) {
    return {group, group_bytes, 0, PairStream(group_bytes, kPrefetchDistance)};
  }
  static Ptr at(Ptr g, int64_t offset) { return {g.p + offset, g.next, g.pos + offset, g.stream}; }
  static void prefetch(Ptr g, int bytes) { prefetch_weight_pair(g.p - g.pos, g.stream, g.pos, bytes); }
  static __m128i load128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
#if defined(TANDEM_VNNI_EMULATED)
  struct I {
    __m256i lo, hi;
  };
  struct F {
    __m256 lo, hi;
  };
  template <class Op>
  static I each(I a, I b, Op op) { return {op(a.lo, b.lo), op(a.hi, b.hi)}; }
  template <class Op>
  static I each(I a, Op op) { return {op(a.lo), op(a.hi)}; }
  static I load(Ptr g, int64_t offset) { return {load256(g.p + offset), load256(g.p + g.next + offset)}; }
  static I load_i8_as_i16(Ptr g, int64_t offset) {
    return {_mm256_cvtepi8_epi16(load128(g.p + offset)), _mm256_cvtepi8_epi16(load128(g.p + g.next + offset))};
  }
  static F load_f16(Ptr g, int64_t offset) {
    return {_mm256_cvtph_ps(load128(g.p + offset)), _mm256_cvtph_ps(load128(g.p + g.next + offset))};
  }
  static I load_dup128(Ptr g, int64_t offset) {
    return {_mm256_broadcastsi128_si256(load128(g.p + offset)),
            _mm256_broadcastsi128_si256(load128(g.p + g.next + offset))};
  }
  static I widen(__m256i v) { return {v, v}; }
  static I bcast128(__m128i v) { return widen(_mm256_broadcastsi128_si256(v)); }
  static I bcast4(const void* p) { return widen(broadcast4(p)); }
  static I set1_8(char v) { return widen(_mm256_set1_epi8(v)); }
  static I set1_32(int32_t v) { return widen(_mm256_set1_epi32(v)); }
  static I zero() { return widen(_mm256_setzero_si256()); }
  static I and_(I a, I b) { return each(a, b, [](__m256i x, __m256i y) { return _mm256_and_si256(x, y); }); }
  static I or_(I a, I b) { return each(a, b, [](__m256i x, __m256i y) { return _mm256_or_si256(x, y); }); }
  static I add32(I a, I b) { return each(a, b, [](__m256i x, __m256i y) { return _mm256_add_epi32(x, y); }); }
  static I sub16(I a, I b) { return each(a, b, [](__m256i x, __m256i y) { return _mm256_sub_epi16(x, y); }); }
  static I sub32(I a, I b) { return each(a, b, [](__m256i x, __m256i y) { return _mm256_sub_epi32(x, y); }); }
  static I mullo32(I a, I b) { return each(a, b, [](__m256i x, __m256i y) { return _mm256_mullo_epi32(x, y); }); }
  static I madd16(I a, I b) { return each(a, b, [](__m256i x, __m256i y) { return _mm256_madd_epi16(x, y); }); }
  static I shuffle8(I a, I c) { return each(a, c, [](__m256i x, __m256i y) { return _mm256_shuffle_epi8(x, y); }); }
  static I unpacklo16(I a, I b) { return each(a, b, [](__m256i x, __m256i y) { return _mm256_unpacklo_epi16(x, y); }); }
  static I unpackhi16(I a, I b) { return each(a, b, [](__m256i x, __m256i y) { return _mm256_unpackhi_epi16(x, y); }); }
  template <int N> static I slli16(I a) { return each(a, [](__m256i x) { return _mm256_slli_epi16(x, N); }); }
  template <int N> static I srli16(I a) { return each(a, [](__m256i x) { return _mm256_srli_epi16(x, N); }); }
  template <int N> static I slli32(I a) { return each(a, [](__m256i x) { return _mm256_slli_epi32(x, N); }); }
  template <int N> static I srai32(I a) { return each(a, [](__m256i x) { return _mm256_srai_epi32(x, N); }); }
  template <int Imm> static I shuffle32(I a) { return each(a, [](__m256i x) { return _mm256_shuffle_epi32(x, Imm); }); }
  static I srlv32(I a, I c) { return each(a, c, [](__m256i x, __m256i y) { return _mm256_srlv_epi32(x, y); }); }
  template <int Imm> static I blend16(I a, I b) {
    return each(a, b, [](__m256i x, __m256i y) { return _mm256_blend_epi16(x, y, Imm); });
  }
  static F zero_ps() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static F set1_ps(float v) { return {_mm256_set1_ps(v), _mm256_set1_ps(v)}; }
  static F cvt(I a) { return {_mm256_cvtepi32_ps(a.lo), _mm256_cvtepi32_ps(a.hi)}; }
  static F mul(F a, F b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
  static F fmadd(F a, F b, F c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
  static F fnmadd(F a, F b, F c) { return {_mm256_fnmadd_ps(a.lo, b.lo, c.lo), _mm256_fnmadd_ps(a.hi, b.hi, c.hi)}; }
  static void store(float* out, F v) {
    _mm256_storeu_ps(out, v.lo);
    _mm256_storeu_ps(out + 8, v.hi);
  }
#else
// GCC 12's _mm512_castsi256_si512 starts from an undefined vector (on purpose), which
// -W(maybe-)uninitialized reports wherever the 512-bit loads inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
  using I = __m512i;
  using F = __m512;
  static __m256i pair128(const uint8_t* p0, const uint8_t* p1) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(load128(p0)), load128(p1), 1);
  }
  static I load(Ptr g, int64_t offset) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(g.p + offset)), load256(g.p + g.next + offset), 1);
  }
  static I load_i8_as_i16(Ptr g, int64_t offset) {
    return _mm512_cvtepi8_epi16(pair128(g.p + offset, g.p + g.next + offset));
  }
  static F load_f16(Ptr g, int64_t offset) { return _mm512_cvtph_ps(pair128(g.p + offset, g.p + g.next + offset)); }
  static I load_dup128(Ptr g, int64_t offset) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(load128(g.p + offset))),
                              _mm256_broadcastsi128_si256(load128(g.p + g.next + offset)), 1);
  }
  static I widen(__m256i v) { return _mm512_broadcast_i64x4(v); }
  static I bcast128(__m128i v) { return _mm512_broadcast_i32x4(v); }
  static I bcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof(v));
    return _mm512_set1_epi32(v);
  }
  static I set1_8(char v) { return _mm512_set1_epi8(v); }
  static I set1_32(int32_t v) { return _mm512_set1_epi32(v); }
  static I zero() { return _mm512_setzero_si512(); }
  static I and_(I a, I b) { return _mm512_and_si512(a, b); }
  static I or_(I a, I b) { return _mm512_or_si512(a, b); }
  static I add32(I a, I b) { return _mm512_add_epi32(a, b); }
  static I sub16(I a, I b) { return _mm512_sub_epi16(a, b); }
  static I sub32(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I mullo32(I a, I b) { return _mm512_mullo_epi32(a, b); }
  static I madd16(I a, I b) { return _mm512_madd_epi16(a, b); }
  static I shuffle8(I a, I control) { return _mm512_shuffle_epi8(a, control); }
  static I unpacklo16(I a, I b) { return _mm512_unpacklo_epi16(a, b); }
  static I unpackhi16(I a, I b) { return _mm512_unpackhi_epi16(a, b); }
  template <int N> static I slli16(I a) { return _mm512_slli_epi16(a, N); }
  template <int N> static I srli16(I a) { return _mm512_srli_epi16(a, N); }
  template <int N> static I slli32(I a) { return _mm512_slli_epi32(a, N); }
  template <int N> static I srai32(I a) { return _mm512_srai_epi32(a, N); }
  template <int Imm> static I shuffle32(I a) { return _mm512_shuffle_epi32(a, static_cast<_MM_PERM_ENUM>(Imm)); }
  static I srlv32(I a, I count) { return _mm512_srlv_epi32(a, count); }
  // vpblendw's 8-bit Imm, repeated for the 32 int16 of the vector.
  template <int Imm> static I blend16(I a, I b) {
    return _mm512_mask_blend_epi16(static_cast<__mmask32>((Imm & 0xFF) * 0x01010101u), a, b);
  }
  static F zero_ps() { return _mm512_setzero_ps(); }
  static F set1_ps(float v) { return _mm512_set1_ps(v); }
  static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static void store(float* out, F v) { _mm512_storeu_ps(out, v); }
#endif
};

inline Zmm16::I dpbusd(Zmm16::I acc, Zmm16::I u8, Zmm16::I s8) {
#if defined(TANDEM_VNNI_EMULATED)
  return {dpbusd(acc.lo, u8.lo, s8.lo), dpbusd(acc.hi, u8.hi, s8.hi)};
#else
  return _mm512_dpbusd_epi32(acc, u8, s8);
#endif
}
#endif

}  // namespace
}  // namespace tandem::cpu::TANDEM_VNNI_NS
