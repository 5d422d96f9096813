// On-disk block layouts of the ggml quantized types, exactly as GGUF stores them
// (little-endian, no padding). Every f16 field is kept as its raw uint16_t bits;
// convert with tandem::f16_to_f32 / f32_to_f16 from core/half.h.
//
// Element numbering: element i of a block is the i-th value of the tensor row the
// block covers. The comments say which bits hold element i.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/host_device.h"

namespace tandem::quant {

// Elements in one K-quant super-block.
inline constexpr int kQK = 256;

// Q4_0: 32 elements, x = d * (q - 8), q in 0..15.
// qs[j] holds element j in its low nibble and element j+16 in its high nibble.
struct BlockQ4_0 {
  static constexpr DType kType = DType::Q4_0;
  static constexpr int kElems = 32;
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q4_1: 32 elements, x = d * q + m, q in 0..15; nibble order as Q4_0.
struct BlockQ4_1 {
  static constexpr DType kType = DType::Q4_1;
  static constexpr int kElems = 32;
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_1) == 20);

// Q5_0: 32 elements, x = d * (q - 16), q in 0..31. Low 4 bits as Q4_0; the fifth bit
// of element j is bit j of qh read as a little-endian uint32.
struct BlockQ5_0 {
  static constexpr DType kType = DType::Q5_0;
  static constexpr int kElems = 32;
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_0) == 22);

// Q5_1: 32 elements, x = d * q + m, q in 0..31; bits as Q5_0.
struct BlockQ5_1 {
  static constexpr DType kType = DType::Q5_1;
  static constexpr int kElems = 32;
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_1) == 24);

// Q8_0: 32 elements, x = d * qs[i].
struct BlockQ8_0 {
  static constexpr DType kType = DType::Q8_0;
  static constexpr int kElems = 32;
  uint16_t d;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Q8_1: 32 elements, x = d * qs[i]; s = d * sum(qs) (an activation format for dot products).
struct BlockQ8_1 {
  static constexpr DType kType = DType::Q8_1;
  static constexpr int kElems = 32;
  uint16_t d;
  uint16_t s;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_1) == 36);

// Q2_K: 256 elements in 16 groups of 16. scales[g]: low nibble = scale, high nibble = min.
// x = (d * sc) * q - (dmin * m), q in 0..3. Element 128*h + 32*s + l is bits 2s..2s+1
// of qs[32*h + l] (h: half, s: 0..3, l: 0..31).
struct BlockQ2_K {
  static constexpr DType kType = DType::Q2_K;
  static constexpr int kElems = kQK;
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// Q3_K: 256 elements in 16 groups of 16, x = (d * (sc - 32)) * q, q in -4..3.
// Low 2 bits as Q2_K's qs. High bit of element 32*b + l is bit b of hmask[l]; q gets
// -4 when that bit is CLEAR. 6-bit scales: sc[g] low nibble is scales[g % 8] nibble
// (g / 8), top 2 bits are bits 2*(g / 4)..+1 of scales[8 + g % 4].
struct BlockQ3_K {
  static constexpr DType kType = DType::Q3_K;
  static constexpr int kElems = kQK;
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110);

// Q4_K: 256 elements in 8 groups of 32, x = (d * sc) * q - (dmin * m), q in 0..15.
// 6-bit scale/min pairs packed in 12 bytes (see unpack_scale_min_k4 in the .cpp):
// groups 0..3 use the low 6 bits of bytes 0..3 (scale) and 4..7 (min); groups 4..7
// take their low 4 bits from bytes 8..11 and top 2 bits from the spare top bits of
// bytes 0..7. Group 2c+s is nibble s of qs[32*c + l].
struct BlockQ4_K {
  static constexpr DType kType = DType::Q4_K;
  static constexpr int kElems = kQK;
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Unpacks the 6-bit scale and min of group j (0..7) of a Q4_K / Q5_K block's scales.
TANDEM_HD inline void unpack_scale_min_k4(const uint8_t* s, int j, int& scale, int& min) {
  if (j < 4) {
    scale = s[j] & 0x3F;
    min = s[j + 4] & 0x3F;
  } else {
    scale = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q5_K: as Q4_K plus a fifth bit: element 32*g + l has its high bit at bit g of qh[l].
struct BlockQ5_K {
  static constexpr DType kType = DType::Q5_K;
  static constexpr int kElems = kQK;
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q6_K: 256 elements in 16 groups of 16, x = (d * scales[g]) * (q - 32), q in 0..63.
// Element 128*h + 32*s + l: low 4 bits are nibble (s / 2) of ql[64*h + 32*(s % 2) + l],
// high 2 bits are bits 2s..2s+1 of qh[32*h + l].
struct BlockQ6_K {
  static constexpr DType kType = DType::Q6_K;
  static constexpr int kElems = kQK;
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// Q8_K: 256 elements, x = d * qs[i] with an f32 scale; bsums[g] = sum of qs in group g of 16.
struct BlockQ8_K {
  static constexpr DType kType = DType::Q8_K;
  static constexpr int kElems = kQK;
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};
static_assert(sizeof(BlockQ8_K) == 292);

// IQ4_NL: 32 elements, x = d * kIQ4NLValues[q], q in 0..15; nibble order as Q4_0.
struct BlockIQ4_NL {
  static constexpr DType kType = DType::IQ4_NL;
  static constexpr int kElems = 32;
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockIQ4_NL) == 18);

// IQ4_XS: 256 elements in 8 groups of 32, x = (d * (sc - 32)) * kIQ4NLValues[q].
// 6-bit sc[g]: low 4 bits = nibble (g % 2) of scales_l[g / 2], high 2 bits = bits
// 2g..2g+1 of scales_h. Group g uses qs[16*g .. 16*g+15] with IQ4_NL's nibble order.
struct BlockIQ4_XS {
  static constexpr DType kType = DType::IQ4_XS;
  static constexpr int kElems = kQK;
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// The non-linear 4-bit codebook shared by IQ4_NL and IQ4_XS.
inline constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

}  // namespace tandem::quant
