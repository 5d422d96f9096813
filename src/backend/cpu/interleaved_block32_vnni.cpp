// VNNI dots of row-interleaved Q5_0 and Q8_0 groups (layouts: interleaved_q5_0.cpp,
// interleaved_q8_0.cpp; frame: interleaved_block32_simd.h) with up to 8 Q8_0 activation
// columns; compiled once per VNNI variant (vnni.h).
//
// One broadcast and one vpdpbusd per chunk and column add 4 elements of all 8 rows into
// int32 lanes. vpdpbusd wants unsigned weights: Q5_0's codes are (0..31, offset 16), and
// Q8_0's signed weights are flipped to w + 128 once per block (one xor per chunk), the
// frame taking 128 * sum(a) off again. AVX2 needs maddubs, adds and madds (Q8_0: a sign
// per chunk and column too) for the same.
#include "backend/cpu/vnni.h"

#include "backend/cpu/interleaved_block32_simd.h"

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
  static inline int code_sum(const int8_t* qs, int weight) {
    return hsum_i32(dpbusd(_mm256_setzero_si256(), _mm256_set1_epi8(static_cast<char>(weight)), load256(qs)));
  }
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

}  // namespace

void dot_q5_0_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() {
    block32_x8::dot_columns<block32_x8::Q5_0Codes, VnniProducts, NC>(n, group, a, a_stride, out, out_stride);
  });
}

void dot_q8_0_x8(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                 int64_t out_stride) {
  dispatch_columns(n_cols, [&]<int NC>() {
    block32_x8::dot_columns<Q8_0Codes, VnniProducts, NC>(n, group, a, a_stride, out, out_stride);
  });
}

}  // namespace tandem::cpu::TANDEM_VNNI_NS
