// AVX2 + FMA + F16C kernels (this file alone is compiled with those flags; nothing here
// runs unless best_isa() said the CPU has them).
//
// Each kernel takes up to four activation columns at once: a weight block is loaded and
// unpacked to int8 once and multiplied with every column, which is what makes prompt
// processing cheaper per token than decode. Products use the maddubs trick (unsigned x
// signed 8-bit pairs summed to 16 bits; signed weights go through sign()) and are scaled
// to 32 bits with madd by the block's integer group scales.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/avx2_util.h"
#include "backend/cpu/quant_dot.h"
#include "backend/cpu/vec_math.h"
#include "quant/blocks.h"
#include "quant/quantize.h"

namespace tandem::cpu {

using namespace tandem::quant;

namespace {

// Lane c of the result = the sum of the eight int32 lanes of v[c] (c < 4), each half of
// the 256-bit result holding four partial sums: two rounds of hadd.
inline __m256i fold4(const __m256i v[4]) {
  return _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
}

// 16 bytes of nibbles -> 32 bytes: low nibbles in the low lane, high nibbles in the high
// lane (the element order of Q4_0/IQ4_NL blocks and of each IQ4_XS group).
inline __m256i nibbles_to_bytes(const uint8_t* qs) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm_srli_epi16(lo, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Bit i of 32 bits -> byte i = 0xFF if set, else 0.
inline __m256i bits_to_bytes(const uint8_t* bits) {
  uint32_t v;
  std::memcpy(&v, bits, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(v)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i all_but_bit = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  return _mm256_cmpeq_epi8(_mm256_or_si256(spread, all_but_bit), _mm256_set1_epi64x(-1));
}

// Sum over pairs of unsigned x signed bytes, widened to 8 int32 lanes.
inline __m256i dot_us8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
// Same for signed x signed (w must not be -128).
inline __m256i dot_ss8(__m256i w, __m256i a) {
  return dot_us8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

template <typename Act>
inline const Act* act_block(const uint8_t* a, size_t stride, int c, int64_t i) {
  return reinterpret_cast<const Act*>(a + c * stride) + i;
}

// ---- Activation quantizers ------------------------------------------------------------

// Quantizes 32 floats to nearest-even int8 codes with d = absmax / 127; returns d and the
// sum of the codes.
inline float quantize_block32(const float* x, int8_t* qs, int& sum) {
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float max = _mm_cvtss_f32(m);
  const float d = max / 127.0f;
  const __m256 id = _mm256_set1_ps(max != 0.0f ? 127.0f / max : 0.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
  // packs interleave 128-bit lanes; the permute puts the 32 codes back in order.
  const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
  const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), p8);
  return d;
}

void quantize_q8_0_avx2(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_0*>(y);
  int sum;
  for (int64_t b = 0; b < n / 32; ++b) {
    out[b].d = _cvtss_sh(quantize_block32(x + 32 * b, out[b].qs, sum), 0);
    set_q8_0_block_tail(static_cast<uint8_t*>(y), n, b, sum, out[b].d);
  }
  clear_q8_0_tail_padding(static_cast<uint8_t*>(y), n);
}

void quantize_q8_1_avx2(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_1*>(y);
  int sum;
  for (int64_t b = 0; b < n / 32; ++b) {
    const float d = quantize_block32(x + 32 * b, out[b].qs, sum);
    out[b].d = _cvtss_sh(d, 0);
    out[b].s = _cvtss_sh(d * static_cast<float>(sum), 0);
  }
}

// Q8_K, byte for byte the reference quantizer (quant/quantize.cpp, ggml's): the first
// element of largest magnitude sets iscale = -127 / max, each code is iscale * x rounded
// half to even (at most 127), d = 1 / iscale, and bsums holds the sums of 16 codes. A
// block with a NaN or an infinity goes to the reference, whose nearest_int maps what
// cvtps cannot.
void quantize_q8_k_avx2(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_K*>(y);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
    __m256 amax = _mm256_setzero_ps(), unordered = _mm256_setzero_ps();
    for (int k = 0; k < kQK / 8; ++k) {
      const __m256 v = _mm256_loadu_ps(x + 8 * k);
      unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      amax = _mm256_max_ps(_mm256_andnot_ps(sign, v), amax);
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float max_abs = _mm_cvtss_f32(m);
    if (_mm256_movemask_ps(unordered) != 0 || std::isinf(max_abs)) {
      quant::quantize_row(DType::Q8_K, x, out + b, kQK);
      continue;
    }
    BlockQ8_K& q = out[b];
    if (max_abs == 0.0f) {
      std::memset(&q, 0, sizeof(q));
      continue;
    }
    // The first element whose magnitude is max_abs, with its sign.
    const __m256 target = _mm256_set1_ps(max_abs);
    float max = max_abs;
    for (int k = 0; k < kQK / 8; ++k) {
      const __m256 v = _mm256_loadu_ps(x + 8 * k);
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, v), target, _CMP_EQ_OQ));
      if (hit != 0) {
        max = x[8 * k + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.f / max;
    if (std::isinf(iscale)) {  // a subnormal max: the reference's codes
      quant::quantize_row(DType::Q8_K, x, out + b, kQK);
      continue;
    }
    const __m256 vscale = _mm256_set1_ps(iscale);
    const __m256i cap = _mm256_set1_epi32(127), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i quads[8];  // per 32 codes: 8 sums of 4 consecutive codes
    for (int k = 0; k < kQK / 32; ++k) {
      __m256i c[4];
      for (int j = 0; j < 4; ++j) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 32 * k + 8 * j), vscale);
        c[j] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), cap);
      }
      // packs interleave 128-bit lanes; the permute puts the 32 codes back in order.
      const __m256i codes = _mm256_permutevar8x32_epi32(
          _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3])), order);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q.qs + 32 * k), codes);
      quads[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, codes), ones16);
    }
    // Two rounds of hadd leave sums of 16: bsums 0, 2, 4, 6 (8, 10, 12, 14) in the low lanes,
    // the odd ones in the high lanes; packing and interleaving the lanes puts them in order.
    const __m256i even_odd_lo = _mm256_hadd_epi32(_mm256_hadd_epi32(quads[0], quads[1]), _mm256_hadd_epi32(quads[2], quads[3]));
    const __m256i even_odd_hi = _mm256_hadd_epi32(_mm256_hadd_epi32(quads[4], quads[5]), _mm256_hadd_epi32(quads[6], quads[7]));
    const __m256i sums16 = _mm256_packs_epi32(even_odd_lo, even_odd_hi);
    const __m128i evens = _mm256_castsi256_si128(sums16), odds = _mm256_extracti128_si256(sums16, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q.bsums), _mm_unpacklo_epi16(evens, odds));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q.bsums + 8), _mm_unpackhi_epi16(evens, odds));
    q.d = 1 / iscale;
  }
}

// ---- 32-element blocks x Q8_0 ----------------------------------------------------------

// Signed int8 weights of one 32-element block.
inline __m256i weights_q4_0(const BlockQ4_0& b) { return _mm256_sub_epi8(nibbles_to_bytes(b.qs), _mm256_set1_epi8(8)); }
inline __m256i weights_q5_0(const BlockQ5_0& b) {
  // A clear fifth bit means q - 16: or-ing 0xF0 into the nibble gives exactly that int8.
  return _mm256_or_si256(nibbles_to_bytes(b.qs), _mm256_andnot_si256(bits_to_bytes(b.qh), _mm256_set1_epi8(static_cast<char>(0xF0))));
}
inline __m256i weights_q8_0(const BlockQ8_0& b) { return load256(b.qs); }
inline __m256i weights_iq4_nl(const BlockIQ4_NL& b) {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues)));
  return _mm256_shuffle_epi8(table, nibbles_to_bytes(b.qs));
}

// W::get(block) gives a block's 32 weights as int8 (a struct, not a function pointer:
// vector return types lose their attributes as template arguments).
template <typename Block, typename W>
struct Dot32 {
  // block(i, parity) for blocks 0..nb-1, even ones with parity 0 and odd ones with parity 1
  // (callers keep one FMA chain per parity: one chain would wait on the FMA latency every
  // block); the weights are prefetched a pair at a time.
  template <typename Fn>
  static void each_block_pair(const Block* wb, int64_t nb, Fn&& block) {
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
      prefetch_weights(wb + i, 2 * sizeof(Block));
      block(i, 0);
      block(i + 1, 1);
    }
    if (i < nb) block(i, 0);
  }

  template <int NC>
  static void run(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    if constexpr (NC == 4) {
      run4(n, w, a, stride, out, os);
      return;
    }
    const auto* wb = static_cast<const Block*>(w);
    __m256 acc[2][NC];  // even / odd blocks
    for (int c = 0; c < NC; ++c) acc[0][c] = acc[1][c] = _mm256_setzero_ps();
    each_block_pair(wb, n / 32, [&](int64_t i, int parity) {
      const __m256i q = W::get(wb[i]);
      const __m256i uq = _mm256_sign_epi8(q, q);
      const float d = f16(wb[i].d);
      for (int c = 0; c < NC; ++c) {
        const BlockQ8_0* ab = act_block<BlockQ8_0>(a, stride, c, i);
        const __m256i p = dot_us8(uq, _mm256_sign_epi8(load256(ab->qs), q));
        acc[parity][c] = _mm256_fmadd_ps(_mm256_set1_ps(d * f16(ab->d)), _mm256_cvtepi32_ps(p), acc[parity][c]);
      }
    });
    for (int c = 0; c < NC; ++c) out[c * os] = hsum(_mm256_add_ps(acc[0][c], acc[1][c]));
  }

  // Four or eight columns (G groups of four) per unpacked weight block. A group's 8-lane
  // integer sums are folded with two rounds of hadd into one vector (lane c of each half =
  // column c), so each block needs one int->float convert, one f16 convert of the four
  // activation scales and one FMA per group instead of four of each.
  static constexpr int kWidest = 8;
  template <int G>
  static void run_groups(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    const auto* wb = static_cast<const Block*>(w);
    const BlockQ8_0* col[4 * G];
    for (int c = 0; c < 4 * G; ++c) col[c] = act_block<BlockQ8_0>(a, stride, c, 0);
    __m256 acc[2][G];  // even / odd blocks
    for (int g = 0; g < G; ++g) acc[0][g] = acc[1][g] = _mm256_setzero_ps();
    each_block_pair(wb, n / 32, [&](int64_t i, int parity) {
      const __m256i q = W::get(wb[i]);
      const __m256i uq = _mm256_sign_epi8(q, q);
      const float dw = f16(wb[i].d);
      for (int g = 0; g < G; ++g) {
        const BlockQ8_0* const* cg = col + 4 * g;
        __m256i p[4];
        for (int c = 0; c < 4; ++c) p[c] = dot_us8(uq, _mm256_sign_epi8(load256(cg[c][i].qs), q));
        const __m256i sums = fold4(p);
        const __m128 da = _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(cg[0][i].d), static_cast<short>(cg[1][i].d),
                                                      static_cast<short>(cg[2][i].d), static_cast<short>(cg[3][i].d), 0, 0,
                                                      0, 0));
        const __m128 scale = _mm_mul_ps(da, _mm_set1_ps(dw));
        acc[parity][g] = _mm256_fmadd_ps(_mm256_set_m128(scale, scale), _mm256_cvtepi32_ps(sums), acc[parity][g]);
      }
    });
    for (int g = 0; g < G; ++g) {
      const __m256 total = _mm256_add_ps(acc[0][g], acc[1][g]);
      alignas(16) float r[4];
      _mm_store_ps(r, add_halves(total));
      for (int c = 0; c < 4; ++c) out[(4 * g + c) * os] = r[c];
    }
  }
  static void run4(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    run_groups<1>(n, w, a, stride, out, os);
  }
  static void run8(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    run_groups<2>(n, w, a, stride, out, os);
  }
};

// ---- 32-element blocks with a min x Q8_1 -------------------------------------------------

inline __m256i weights_q4_1(const BlockQ4_1& b) { return nibbles_to_bytes(b.qs); }
inline __m256i weights_q5_1(const BlockQ5_1& b) {
  return _mm256_or_si256(nibbles_to_bytes(b.qs), _mm256_and_si256(bits_to_bytes(b.qh), _mm256_set1_epi8(0x10)));
}

template <typename Block, typename W>
struct Dot32Min {
  template <int NC>
  static void run(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    const auto* wb = static_cast<const Block*>(w);
    __m256 acc[NC];
    float mins[NC] = {};
    for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; ++i) {
      if (i % 2 == 0) prefetch_weights(wb + i, 2 * sizeof(Block));
      const __m256i q = W::get(wb[i]);  // unsigned 0..31
      const float d = f16(wb[i].d), m = f16(wb[i].m);
      for (int c = 0; c < NC; ++c) {
        const BlockQ8_1* ab = act_block<BlockQ8_1>(a, stride, c, i);
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * f16(ab->d)), _mm256_cvtepi32_ps(dot_us8(q, load256(ab->qs))), acc[c]);
        mins[c] += m * f16(ab->s);
      }
    }
    for (int c = 0; c < NC; ++c) out[c * os] = hsum(acc[c]) + mins[c];
  }
};

#define TANDEM_WEIGHTS(Name, Block, fn) \
  struct Name {                         \
    static __m256i get(const Block& b) { return fn(b); } \
  };
TANDEM_WEIGHTS(Q4_0W, BlockQ4_0, weights_q4_0)
TANDEM_WEIGHTS(Q5_0W, BlockQ5_0, weights_q5_0)
TANDEM_WEIGHTS(Q8_0W, BlockQ8_0, weights_q8_0)
TANDEM_WEIGHTS(IQ4_NLW, BlockIQ4_NL, weights_iq4_nl)
TANDEM_WEIGHTS(Q4_1W, BlockQ4_1, weights_q4_1)
TANDEM_WEIGHTS(Q5_1W, BlockQ5_1, weights_q5_1)
#undef TANDEM_WEIGHTS

// ---- K-quants x Q8_K ---------------------------------------------------------------------

// int16 scale s0 in the low 128-bit lane and s1 in the high one (16-element groups).
inline __m256i lane_scales(int s0, int s1) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(s0))),
                                 _mm_set1_epi16(static_cast<short>(s1)), 1);
}

// Q4_K/Q5_K: unpacks the 12 packed bytes into 8 scales (bytes 0..7) then 8 mins (8..15),
// kept in a register (a store and a reload would stall on store forwarding).
inline __m128i k4_scales_mins(const uint8_t* packed) {
  uint32_t u[3];
  std::memcpy(u, packed, 12);
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  const uint32_t scales_hi = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);
  const uint32_t mins_hi = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);
  return _mm_setr_epi32(static_cast<int>(u[0] & kLow6), static_cast<int>(scales_hi), static_cast<int>(u[1] & kLow6),
                        static_cast<int>(mins_hi));
}

template <bool kFive>
struct DotQ45K {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  // Columns are handled four wide (missing ones as zeros): the integer sums of the four
  // are folded into one vector, so each block costs one convert and one FMA for the codes
  // and one for the mins, whatever the column count.
  template <int NC>
  static void run(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    const auto* wb = static_cast<const Block*>(w);
    const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const BlockQ8_K* col[NC];
    for (int c = 0; c < NC; ++c) col[c] = act_block<BlockQ8_K>(a, stride, c, 0);
    __m256 acc[NC];
    __m128 mins[NC];
    for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps(), mins[c] = _mm_setzero_ps();
    for (int64_t i = 0; i < n / kQK; ++i) {
      const Block& b = wb[i];
      prefetch_weights(&b, sizeof(b));
      const __m128i sm = k4_scales_mins(b.scales);
      const __m128i mins16 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));
      const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
      alignas(16) float da_arr[4] = {};
      __m256i sumi[4], msum[4];
      for (int c = 0; c < 4; ++c) sumi[c] = msum[c] = _mm256_setzero_si256();
      for (int c = 0; c < NC; ++c) {
        const BlockQ8_K& ab = col[c][i];
        da_arr[c] = ab.d;
        // Group sums of the activations from bsums (pairs of 16 -> 8 groups of 32).
        const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ab.bsums)),
                                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(ab.bsums + 8)));
        msum[c] = _mm256_castsi128_si256(_mm_madd_epi16(mins16, bs));
      }
      __m256i hbits;
      if constexpr (kFive) hbits = load256(b.qh);
      for (int j = 0; j < 4; ++j) {
        const __m256i bits = load256(b.qs + 32 * j);
        __m256i ql = _mm256_and_si256(bits, low4), qh = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low4);
        if constexpr (kFive) {
          ql = _mm256_add_epi8(ql, _mm256_slli_epi16(_mm256_and_si256(hbits, one), 4));
          qh = _mm256_add_epi8(qh, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 1), one), 4));
          hbits = _mm256_srli_epi16(hbits, 2);
        }
        const __m256i sl = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<short>((4 * j + 1) << 8 | 4 * j)));
        const __m256i sh = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<short>((4 * j + 3) << 8 | (4 * j + 2))));
        for (int c = 0; c < NC; ++c) {
          const __m256i pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(ql, load256(col[c][i].qs + 64 * j)));
          const __m256i ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(qh, load256(col[c][i].qs + 64 * j + 32)));
          sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(pl, ph));
        }
      }
      const float d = f16(b.d), dmin = f16(b.dmin);
      if constexpr (NC == 4) {
        const __m128 da = _mm_load_ps(da_arr);
        const __m128 dd = _mm_mul_ps(da, _mm_set1_ps(d));
        acc[0] = _mm256_fmadd_ps(_mm256_set_m128(dd, dd), _mm256_cvtepi32_ps(fold4(sumi)), acc[0]);
        // Only the low halves of msum hold data: the folded low lane has every column's total.
        mins[0] = _mm_fmadd_ps(_mm_mul_ps(da, _mm_set1_ps(dmin)), _mm_cvtepi32_ps(_mm256_castsi256_si128(fold4(msum))),
                               mins[0]);
      } else {
        // Fewer columns: per-column accumulators, reduced once per row instead of per block.
        for (int c = 0; c < NC; ++c) {
          acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * da_arr[c]), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
          mins[c] = _mm_fmadd_ps(_mm_set1_ps(dmin * da_arr[c]), _mm_cvtepi32_ps(_mm256_castsi256_si128(msum[c])), mins[c]);
        }
      }
    }
    if constexpr (NC == 4) {
      alignas(16) float r[4];
      _mm_store_ps(r, _mm_sub_ps(add_halves(acc[0]), mins[0]));
      for (int c = 0; c < NC; ++c) out[c * os] = r[c];
    } else {
      for (int c = 0; c < NC; ++c) out[c * os] = hsum(acc[c]) - hsum(mins[c]);
    }
  }
};

// Shared tail of the 16-element-group K-quants (Q2_K, Q3_K, Q6_K): four unsigned 32-byte
// code vectors per 128-element half, group scales per 16, plus an integer correction per
// column (sum over groups of corr_scale[g] * bsums[g], shifted) that removes the codes'
// offset or applies the mins.
struct Groups16 {
  // q[s] covers elements 128*h + 32*s .. +31; scale[g] for the 16 groups (int16).
  template <int NC>
  static void accumulate(const __m256i q[4], const int16_t* scale, int h, const uint8_t* a, size_t stride,
                         int64_t i, __m256i sumi[NC]) {
    for (int s = 0; s < 4; ++s) {
      const __m256i sc = lane_scales(scale[8 * h + 2 * s], scale[8 * h + 2 * s + 1]);
      for (int c = 0; c < NC; ++c) {
        const BlockQ8_K* ab = act_block<BlockQ8_K>(a, stride, c, i);
        sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(sc, _mm256_maddubs_epi16(q[s], load256(ab->qs + 128 * h + 32 * s))));
      }
    }
  }
  // sum_g weights[g] * bsums[g] of one activation block.
  static int weighted_bsums(const int16_t* weights, const BlockQ8_K& ab) {
    return hsum_i32(_mm256_madd_epi16(load256(weights), load256(ab.bsums)));
  }
};

struct DotQ6K {
  // Folded four columns wide like DotQ45K; the group scales stay in registers: each 128-element
  // half broadcasts its eight int16 scales to both 128-bit lanes and one in-lane shuffle
  // per 32 elements picks group 2s for the low lane and 2s+1 for the high one.
  template <int NC>
  static void run(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    const auto* wb = static_cast<const BlockQ6_K*>(w);
    const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(3);
    const BlockQ8_K* col[NC];
    for (int c = 0; c < NC; ++c) col[c] = act_block<BlockQ8_K>(a, stride, c, 0);
    __m256 acc[NC];
    for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK; ++i) {
      const BlockQ6_K& b = wb[i];
      prefetch_weights(&b, sizeof(b));
      const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
      const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
      alignas(16) float da_arr[4] = {};
      __m256i sumi[4];
      for (int c = 0; c < 4; ++c) sumi[c] = _mm256_setzero_si256();
      for (int c = 0; c < NC; ++c) {
        // Codes are stored +32: subtract 32 * scale[g] * bsum[g].
        da_arr[c] = col[c][i].d;
        sumi[c] = _mm256_sub_epi32(sumi[c], _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(col[c][i].bsums)), 5));
      }
      for (int h = 0; h < 2; ++h) {
        const __m256i half_scales = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(h == 0 ? sc8 : _mm_unpackhi_epi64(sc8, sc8)));
        const __m256i l0 = load256(b.ql + 64 * h), l1 = load256(b.ql + 64 * h + 32), hb = load256(b.qh + 32 * h);
        const __m256i q[4] = {
            _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(hb, low2), 4)),
            _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), low2), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), low2), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), low2), 4)),
        };
        for (int sub = 0; sub < 4; ++sub) {
          const char lo = static_cast<char>(4 * sub), hi = static_cast<char>(4 * sub + 2);
          const __m256i sc = _mm256_shuffle_epi8(
              half_scales, _mm256_setr_epi8(lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo,
                                            lo + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi,
                                            hi + 1, hi, hi + 1));
          for (int c = 0; c < NC; ++c) {
            const __m256i p = _mm256_maddubs_epi16(q[sub], load256(col[c][i].qs + 128 * h + 32 * sub));
            sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(sc, p));
          }
        }
      }
      const float d = f16(b.d);
      if constexpr (NC == 4) {
        const __m128 dd = _mm_mul_ps(_mm_load_ps(da_arr), _mm_set1_ps(d));
        acc[0] = _mm256_fmadd_ps(_mm256_set_m128(dd, dd), _mm256_cvtepi32_ps(fold4(sumi)), acc[0]);
      } else {
        for (int c = 0; c < NC; ++c) acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * da_arr[c]), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
      }
    }
    if constexpr (NC == 4) {
      alignas(16) float r[4];
      _mm_store_ps(r, add_halves(acc[0]));
      for (int c = 0; c < NC; ++c) out[c * os] = r[c];
    } else {
      for (int c = 0; c < NC; ++c) out[c * os] = hsum(acc[c]);
    }
  }
};

struct DotQ2K {
  template <int NC>
  static void run(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    const auto* wb = static_cast<const BlockQ2_K*>(w);
    const __m256i low2 = _mm256_set1_epi8(3);
    __m256 acc[NC];
    float mins[NC] = {};
    for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK; ++i) {
      const BlockQ2_K& b = wb[i];
      prefetch_weights(&b, sizeof(b));
      alignas(32) int16_t scale[16], minv[16];
      for (int g = 0; g < 16; ++g) scale[g] = b.scales[g] & 0x0F, minv[g] = b.scales[g] >> 4;
      const float d = f16(b.d), dmin = f16(b.dmin);
      __m256i sumi[NC];
      for (int c = 0; c < NC; ++c) {
        const BlockQ8_K* ab = act_block<BlockQ8_K>(a, stride, c, i);
        mins[c] += dmin * ab->d * static_cast<float>(Groups16::weighted_bsums(minv, *ab));
        sumi[c] = _mm256_setzero_si256();
      }
      for (int h = 0; h < 2; ++h) {
        const __m256i bits = load256(b.qs + 32 * h);
        const __m256i q[4] = {_mm256_and_si256(bits, low2), _mm256_and_si256(_mm256_srli_epi16(bits, 2), low2),
                              _mm256_and_si256(_mm256_srli_epi16(bits, 4), low2), _mm256_and_si256(_mm256_srli_epi16(bits, 6), low2)};
        Groups16::accumulate<NC>(q, scale, h, a, stride, i, sumi);
      }
      for (int c = 0; c < NC; ++c) {
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * act_block<BlockQ8_K>(a, stride, c, i)->d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
      }
    }
    for (int c = 0; c < NC; ++c) out[c * os] = hsum(acc[c]) - mins[c];
  }
};

struct DotQ3K {
  template <int NC>
  static void run(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    const auto* wb = static_cast<const BlockQ3_K*>(w);
    const __m256i low2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256 acc[NC];
    for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK; ++i) {
      const BlockQ3_K& b = wb[i];
      prefetch_weights(&b, sizeof(b));
      alignas(32) int16_t scale[16];
      for (int g = 0; g < 16; ++g) {
        const int lo = (b.scales[g % 8] >> (4 * (g / 8))) & 0x0F, hi = (b.scales[8 + g % 4] >> (2 * (g / 4))) & 3;
        scale[g] = static_cast<int16_t>((lo | (hi << 4)) - 32);
      }
      __m256i sumi[NC];
      for (int c = 0; c < NC; ++c) {
        // Codes are used as 0..7 (stored value + 4): subtract 4 * scale[g] * bsum[g].
        const int corr = Groups16::weighted_bsums(scale, *act_block<BlockQ8_K>(a, stride, c, i));
        sumi[c] = _mm256_setr_epi32(-4 * corr, 0, 0, 0, 0, 0, 0, 0);
      }
      __m256i hmask = load256(b.hmask);
      for (int h = 0; h < 2; ++h) {
        const __m256i bits = load256(b.qs + 32 * h);
        __m256i q[4];
        for (int s = 0; s < 4; ++s) {
          const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * s)), low2);
          q[s] = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hmask, one), 2));
          hmask = _mm256_srli_epi16(hmask, 1);
        }
        Groups16::accumulate<NC>(q, scale, h, a, stride, i, sumi);
      }
      const float d = f16(b.d);
      for (int c = 0; c < NC; ++c) {
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * act_block<BlockQ8_K>(a, stride, c, i)->d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
      }
    }
    for (int c = 0; c < NC; ++c) out[c * os] = hsum(acc[c]);
  }
};

struct DotIQ4XS {
  template <int NC>
  static void run(int64_t n, const void* w, const uint8_t* a, size_t stride, float* out, int64_t os) {
    const auto* wb = static_cast<const BlockIQ4_XS*>(w);
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues)));
    __m256 acc[NC];
    for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK; ++i) {
      const BlockIQ4_XS& b = wb[i];
      prefetch_weights(&b, sizeof(b));
      __m256i sumi[NC];
      for (int c = 0; c < NC; ++c) sumi[c] = _mm256_setzero_si256();
      for (int g = 0; g < 8; ++g) {
        const int sc = (((b.scales_l[g / 2] >> (4 * (g % 2))) & 0x0F) | (((b.scales_h >> (2 * g)) & 3) << 4)) - 32;
        const __m256i q = _mm256_shuffle_epi8(table, nibbles_to_bytes(b.qs + 16 * g));
        const __m256i uq = _mm256_sign_epi8(q, q), scale = _mm256_set1_epi16(static_cast<short>(sc));
        for (int c = 0; c < NC; ++c) {
          const BlockQ8_K* ab = act_block<BlockQ8_K>(a, stride, c, i);
          const __m256i p = _mm256_maddubs_epi16(uq, _mm256_sign_epi8(load256(ab->qs + 32 * g), q));
          sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(scale, p));
        }
      }
      const float d = f16(b.d);
      for (int c = 0; c < NC; ++c) {
        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * act_block<BlockQ8_K>(a, stride, c, i)->d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
      }
    }
    for (int c = 0; c < NC; ++c) out[c * os] = hsum(acc[c]);
  }
};

// Columns in groups of eight (kernels that unpack a weight block once for eight), then
// four, then the remainder.
template <typename K>
void dot_columns(int64_t n, const void* w, const void* a, size_t stride, int n_cols, float* out, int64_t os) {
  const auto* ab = static_cast<const uint8_t*>(a);
  int c = 0;
  if constexpr (requires { K::kWidest; }) {
    for (; c + 8 <= n_cols; c += 8) K::run8(n, w, ab + c * stride, stride, out + c * os, os);
  }
  for (; c + 4 <= n_cols; c += 4) K::template run<4>(n, w, ab + c * stride, stride, out + c * os, os);
  switch (n_cols - c) {
    case 3: K::template run<3>(n, w, ab + c * stride, stride, out + c * os, os); break;
    case 2: K::template run<2>(n, w, ab + c * stride, stride, out + c * os, os); break;
    case 1: K::template run<1>(n, w, ab + c * stride, stride, out + c * os, os); break;
    default: break;
  }
}

}  // namespace

QuantDotKernel quant_dot_kernel_avx2(DType weight) {
  QuantDotKernel k = quant_dot_kernel_scalar(weight);
  if (!k) return k;
  switch (k.activation) {
    case DType::Q8_0: k.quantize = quantize_q8_0_avx2; break;
    case DType::Q8_1: k.quantize = quantize_q8_1_avx2; break;
    case DType::Q8_K: k.quantize = quantize_q8_k_avx2; break;
    default: break;
  }
  switch (weight) {
    case DType::Q4_0: k.dot = dot_columns<Dot32<BlockQ4_0, Q4_0W>>; break;
    case DType::Q5_0: k.dot = dot_columns<Dot32<BlockQ5_0, Q5_0W>>; break;
    case DType::Q8_0: k.dot = dot_columns<Dot32<BlockQ8_0, Q8_0W>>; break;
    case DType::IQ4_NL: k.dot = dot_columns<Dot32<BlockIQ4_NL, IQ4_NLW>>; break;
    case DType::Q4_1: k.dot = dot_columns<Dot32Min<BlockQ4_1, Q4_1W>>; break;
    case DType::Q5_1: k.dot = dot_columns<Dot32Min<BlockQ5_1, Q5_1W>>; break;
    case DType::Q2_K: k.dot = dot_columns<DotQ2K>; break;
    case DType::Q3_K: k.dot = dot_columns<DotQ3K>; break;
    case DType::Q4_K: k.dot = dot_columns<DotQ45K<false>>; break;
    case DType::Q5_K: k.dot = dot_columns<DotQ45K<true>>; break;
    case DType::Q6_K: k.dot = dot_columns<DotQ6K>; break;
    case DType::IQ4_XS: k.dot = dot_columns<DotIQ4XS>; break;
    default: break;  // keeps the scalar kernel
  }
  switch (weight) {
    case DType::Q4_0: k.dot_x8 = dot_q4_0_x8_avx2; break;
    case DType::IQ4_NL: k.dot_x8 = dot_iq4_nl_x8_avx2; break;
    case DType::Q5_0: k.dot_x8 = dot_q5_0_x8_avx2; break;
    case DType::Q8_0: k.dot_x8 = dot_q8_0_x8_avx2; break;
    case DType::Q4_K: k.dot_x8 = dot_q4_k_x8_avx2; break;
    case DType::Q5_K: k.dot_x8 = dot_q5_k_x8_avx2; break;
    case DType::Q6_K: k.dot_x8 = dot_q6_k_x8_avx2; break;
    case DType::IQ4_XS: k.dot_x8 = dot_iq4_xs_x8_avx2; break;
    default: break;
  }
  return k;
}

}  // namespace tandem::cpu
