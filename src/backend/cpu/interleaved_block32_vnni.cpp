// VNNI dots of row-interleaved Q4_0, IQ4_NL, Q5_0 and Q8_0 groups (layouts:
// interleaved_q4_0.cpp, interleaved_q5_0.cpp, interleaved_q8_0.cpp; frame:
// interleaved_block32_simd.h) with up to 8 Q8_0 activation columns; compiled once per VNNI
// variant (vnni.h).
//
// One broadcast and one vpdpbusd per chunk and column add 4 elements of all 8 rows into
// int32 lanes. vpdpbusd wants unsigned weights: Q4_0's and Q5_0's codes are (0..15, offset
// 8; 0..31, offset 16), and Q8_0's and IQ4_NL's signed weights become w + 128 once per
// block (one xor or table lookup per chunk), the frame taking 128 * sum(a) off again.
// AVX2 needs maddubs, adds and madds (Q8_0, IQ4_NL: a sign per chunk and column too) for
// the same.
#include "backend/cpu/vnni.h"

#include "backend/cpu/interleaved_block32_simd.h"

#include <cstring>

namespace tandem::cpu::TANDEM_VNNI_NS {

namespace {

// Q8_0 (group block: 8 f16 scales, then 8 chunks of int8 weights), as w + 128.
struct Q8_0Codes {
  static constexpr int64_t kBlockBytes = 8 * sizeof(quant::BlockQ8_0);
  static constexpr int kOffset = 128;
  static inline void unpack(const uint8_t* gb, __m256i q[8]) {
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int i = 0; i < 8; ++i) q[i] = _mm256_xor_si256(load256(gb + 16 + 32 * i), flip);
  }
};

struct VnniProducts {
  static inline __m256i dot(const __m256i q[8], const uint8_t* aq) {
    // Two chains: a vpdpbusd's latency (4-5 cycles) is longer than its issue interval.
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    for (int i = 0; i < 8; i += 2) {
      s0 = dpbusd(s0, q[i], broadcast4(aq + 4 * i));
      s1 = dpbusd(s1, q[i + 1], broadcast4(aq + 4 * i + 4));
    }
    return _mm256_add_epi32(s0, s1);
  }
};

#if defined(__AVX512F__) && !defined(TANDEM_VNNI_EMULATED)
// GCC 12's 512-bit intrinsics start from _mm512_undefined_*() (self-initialised on
// purpose), which -Wmaybe-uninitialized reports at every inlined use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Two consecutive groups (16 rows) per 512-bit vector, for CPUs whose vpdpbusd takes a zmm
// at the rate of a ymm (measured on this project's Ice Lake-class Xeon: 5.1 G zmm vs 5.4 G
// ymm vpdpbusd per second, so twice the bytes). The activations' broadcasts, the offset and
// the per-block float work are paid once per 16 rows instead of once per 8; each row's
// integer sums and float operations are the 8-row kernel's, in the same order, so the
// results are bit-identical to two dot_columns calls.
inline __m512i load_pair(const uint8_t* p0, const uint8_t* p1) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(load256(p0)), load256(p1), 1);
}

struct Q4_0Codes16 {
  static constexpr int64_t kBlockBytes = block32_x8::Q4_0Codes::kBlockBytes;
  static constexpr int kOffset = block32_x8::Q4_0Codes::kOffset;
  static inline void unpack(const uint8_t* g0, const uint8_t* g1, __m512i q[8]) {
    __m512i raw[4];
    for (int v = 0; v < 4; ++v) raw[v] = load_pair(g0 + 16 + 32 * v, g1 + 16 + 32 * v);
    block32_x8::nibble_codes(raw, q);
  }
};

struct Q5_0Codes16 {
  static constexpr int64_t kBlockBytes = block32_x8::Q5_0Codes::kBlockBytes;
  static constexpr int kOffset = block32_x8::Q5_0Codes::kOffset;
  static inline void unpack(const uint8_t* g0, const uint8_t* g1, __m512i q[8]) {
    Q4_0Codes16::unpack(g0, g1, q);
    block32_x8::add_fifth_bits(load_pair(g0 + 16 + 128, g1 + 16 + 128), q);
  }
};

struct IQ4_NLCodes16 {
  static constexpr int64_t kBlockBytes = block32_x8::IQ4_NLCodes::kBlockBytes;
  static constexpr int kOffset = block32_x8::IQ4_NLCodes::kOffset;
  static inline void unpack(const uint8_t* g0, const uint8_t* g1, __m512i q[8]) {
    Q4_0Codes16::unpack(g0, g1, q);
    const __m512i t = _mm512_broadcast_i64x4(block32_x8::IQ4_NLCodes::table());
    for (int i = 0; i < 8; ++i) q[i] = _mm512_shuffle_epi8(t, q[i]);
  }
};

struct Q8_0Codes16 {
  static constexpr int64_t kBlockBytes = Q8_0Codes::kBlockBytes;
  static constexpr int kOffset = Q8_0Codes::kOffset;
  static inline void unpack(const uint8_t* g0, const uint8_t* g1, __m512i q[8]) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int i = 0; i < 8; ++i) q[i] = _mm512_xor_si512(load_pair(g0 + 16 + 32 * i, g1 + 16 + 32 * i), flip);
  }
};

inline __m512i broadcast4_512(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return _mm512_set1_epi32(v);
}

template <class Codes, int NC>
void dot_columns_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, float* out, int64_t os) {
  using block32_x8::kSpan;
  const int64_t nb = n / 32;
  const uint8_t* group1 = group + nb * Codes::kBlockBytes;  // the next 8 rows
  const PairStream stream(nb * Codes::kBlockBytes, kPrefetchDistance);
  __m512 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm512_setzero_ps();
  alignas(32) int32_t offset[NC][kSpan];
  alignas(32) float scale_a[NC][kSpan];
  for (int64_t b0 = 0; b0 < nb; b0 += kSpan) {
    const int64_t b1 = std::min(nb, b0 + kSpan);
    block32_x8::span_sums<NC>(n, a, a_stride, b0, b1, Codes::kOffset, offset, scale_a);
    for (int64_t b = b0; b < b1; ++b) {
      const uint8_t* g0 = group + b * Codes::kBlockBytes;
      const uint8_t* g1 = group1 + b * Codes::kBlockBytes;
      prefetch_weight_pair(group, stream, b * Codes::kBlockBytes, Codes::kBlockBytes);
      const __m512 dw = _mm512_cvtph_ps(_mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g0))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(g1)), 1));
      __m512i q[8];
      Codes::unpack(g0, g1, q);
      for (int c = 0; c < NC; ++c) {
        const uint8_t* aq = a + c * a_stride + b * sizeof(quant::BlockQ8_0) + offsetof(quant::BlockQ8_0, qs);
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        for (int i = 0; i < 8; i += 2) {
          s0 = _mm512_dpbusd_epi32(s0, q[i], broadcast4_512(aq + 4 * i));
          s1 = _mm512_dpbusd_epi32(s1, q[i + 1], broadcast4_512(aq + 4 * i + 4));
        }
        const __m512i sum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(offset[c][b - b0]));
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(scale_a[c][b - b0])), acc[c]);
      }
    }
  }
  for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out + c * os, acc[c]);
}
#endif

}  // namespace

#if defined(__AVX512F__) && !defined(TANDEM_VNNI_EMULATED)
void dot_q5_0_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                  int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns_x16<Q5_0Codes16, NC>(n, group, a, a_stride, out, out_stride); });
}

void dot_q4_0_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                  int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns_x16<Q4_0Codes16, NC>(n, group, a, a_stride, out, out_stride); });
}

void dot_iq4_nl_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                    int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns_x16<IQ4_NLCodes16, NC>(n, group, a, a_stride, out, out_stride); });
}

void dot_q8_0_x16(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                  int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() { dot_columns_x16<Q8_0Codes16, NC>(n, group, a, a_stride, out, out_stride); });
}
#endif

void dot_q5_0_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t out_stride) {
  block32_x8::group_dot<block32_x8::Q5_0Codes, VnniProducts>(n, group, a, a_stride, n_cols, out, out_stride);
}

void dot_q4_0_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t out_stride) {
  block32_x8::group_dot<block32_x8::Q4_0Codes, VnniProducts>(n, group, a, a_stride, n_cols, out, out_stride);
}

void dot_iq4_nl_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                   int64_t out_stride) {
  block32_x8::group_dot<block32_x8::IQ4_NLCodes, VnniProducts>(n, group, a, a_stride, n_cols, out, out_stride);
}

void dot_q8_0_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t out_stride) {
  block32_x8::group_dot<Q8_0Codes, VnniProducts>(n, group, a, a_stride, n_cols, out, out_stride);
}

}  // namespace tandem::cpu::TANDEM_VNNI_NS
