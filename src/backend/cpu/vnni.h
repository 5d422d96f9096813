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

#if defined(TANDEM_VNNI_EMULATED)
#include <simde/x86/avx512/dpbusd.h>
#endif

#ifndef TANDEM_VNNI_NS
#error "vnni.h: TANDEM_VNNI_NS (the variant's namespace) must be defined by the build"
#endif

namespace tandem::cpu::TANDEM_VNNI_NS {
namespace {

// acc + (sum of u8[4i..4i+3] * s8[4i..4i+3]) in each 32-bit lane i, exact in int32.
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

}  // namespace
}  // namespace tandem::cpu::TANDEM_VNNI_NS
