// Decoding of GGUF weight blocks, shared by the CUDA kernels and a CPU test: every
// function here is __host__ __device__, so tests/backend/quant_decode_host_test.cpp proves
// on the CPU that it is bit-identical to the reference dequantizer (quant/dequantize.h),
// and the kernels (matmul.cu) use exactly these functions.
//
// The unit of work is a sub-block: 32 consecutive elements of a row (a whole Q4_0-style
// block, or one eighth of a 256-element K-quant super-block), matching one 32-element
// block of 8-bit activations. Every supported format decodes a sub-block to
//   32 integer codes (int8, packed four to a 32-bit word in element order) and,
//   per 16-element half, value = scale * code (+ offset),
// which is the reference's own order of float operations for each type (d * (q - 8),
// d * q + m, (d * sc) * q - (dmin * m), ...): the integer mat-vec takes dot products of
// the codes with __dp4a and the float decoders form scale * code (+ offset) with
// un-fused device multiplies and adds, so GPU floats equal the CPU reference bit for bit.
//
// blocks.h and core/dtype.h are plain C++17 and compile under nvcc; only their
// host-side codebook (kIQ4NLValues) is re-encoded here as byte_perm words.
// Weight pointers must be 16-byte aligned at the tensor's start (GGUF data is 32-aligned,
// cudaMalloc 256); loads then use the widest width each field's offset allows.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/blocks.h"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif
#include "core/host_device.h"

namespace tandem::cuda {

// --- Primitives: each has a device instruction and an exact host equivalent. ---------

TANDEM_HD inline float half_bits_to_float(uint16_t h) {
#ifdef __CUDA_ARCH__
  return __half2float(__ushort_as_half(h));
#else
  return f16_to_f32(h);
#endif
}

TANDEM_HD inline float bf16_bits_to_float(uint16_t h) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
#else
  return bf16_to_f32(h);
#endif
}

// a * b and a + b rounded once each: nvcc would otherwise fuse scale * code + offset into
// one FMA and differ from the reference in the last bit.
TANDEM_HD inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TANDEM_HD inline float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// c + sum over the four byte lanes of a_j * b_j (signed bytes).
TANDEM_HD inline int dp4a(int a, int b, int c) {
#ifdef __CUDA_ARCH__
  return __dp4a(a, b, c);
#else
  for (int j = 0; j < 4; ++j) {
    c += static_cast<int8_t>(static_cast<uint32_t>(a) >> (8 * j)) * static_cast<int8_t>(static_cast<uint32_t>(b) >> (8 * j));
  }
  return c;
#endif
}

// Byte j of the result is byte (s >> 4j) & 7 of the eight bytes {x, y}; selector nibbles
// must have bit 3 clear (the device's sign-replicate flag).
TANDEM_HD inline uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#ifdef __CUDA_ARCH__
  return __byte_perm(x, y, s);
#else
  const uint64_t bytes = (static_cast<uint64_t>(y) << 32) | x;
  uint32_t r = 0;
  for (int j = 0; j < 4; ++j) r |= static_cast<uint32_t>((bytes >> (8 * ((s >> (4 * j)) & 7))) & 0xFF) << (8 * j);
  return r;
#endif
}

// Subtracts `bias` from each byte of v (each byte below 128 + bias): no borrow crosses a
// byte, so four codes are re-centred with one add and one xor.
TANDEM_HD inline uint32_t sub_bytes(uint32_t v, uint32_t bias) {
  return (v + (0x80u - bias) * 0x01010101u) ^ 0x80808080u;
}

// Bits 0..3 of h4 moved to bit 4 of bytes 0..3 (the fifth bit of Q5_0 / Q5_1 codes).
TANDEM_HD inline uint32_t spread_bits_to_bit4(uint32_t h4) {
  return ((h4 & 1u) << 4) | ((h4 & 2u) << 11) | ((h4 & 4u) << 18) | ((h4 & 8u) << 25);
}

// The IQ4_NL codebook (quant::kIQ4NLValues) as little-endian bytes, four per word.
inline constexpr uint32_t kIQ4Words[4] = {0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u};

// Codebook values for the four nibble indices held one per byte in n (bytes 0..15).
TANDEM_HD inline uint32_t iq4_lookup4(uint32_t n) {
  const uint32_t sel = (n & 0x7u) | ((n >> 4) & 0x70u) | ((n >> 8) & 0x700u) | ((n >> 12) & 0x7000u);
  const uint32_t lo = byte_perm(kIQ4Words[0], kIQ4Words[1], sel);
  const uint32_t hi = byte_perm(kIQ4Words[2], kIQ4Words[3], sel);
  const uint32_t mask = ((n >> 3) & 0x01010101u) * 0xFFu;  // bytes whose index is >= 8
  return (lo & ~mask) | (hi & mask);
}

// Alignment a field at byte `offset` of a block of `block_bytes` is guaranteed to have
// when the row starts 16-byte aligned (at most 16).
constexpr int field_align(int block_bytes, int offset) {
  int a = 16;
  while (a > 1 && (block_bytes % a != 0 || offset % a != 0)) a /= 2;
  return a;
}

// n 32-bit words from p (p aligned to kAlign), with the widest loads that alignment allows.
template <int kAlign, int kWords>
TANDEM_HD inline void load_words(const uint8_t* p, uint32_t* out) {
#ifdef __CUDA_ARCH__
  if constexpr (kAlign >= 16 && kWords % 4 == 0) {
    for (int i = 0; i < kWords / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(p)[i];
      out[4 * i] = v.x, out[4 * i + 1] = v.y, out[4 * i + 2] = v.z, out[4 * i + 3] = v.w;
    }
  } else if constexpr (kAlign >= 8 && kWords % 2 == 0) {
    for (int i = 0; i < kWords / 2; ++i) {
      const uint2 v = reinterpret_cast<const uint2*>(p)[i];
      out[2 * i] = v.x, out[2 * i + 1] = v.y;
    }
  } else if constexpr (kAlign >= 4) {
    for (int i = 0; i < kWords; ++i) out[i] = reinterpret_cast<const uint32_t*>(p)[i];
  } else {
    // 2-byte aligned (blocks of 18, 22, 34, 110, 210 bytes): aligned words from the word
    // holding p, shifted into place: kWords + 1 loads instead of 2 * kWords 16-bit ones.
    // The extra word is read only when p is not 4-aligned, and then it shares its aligned
    // word with the field's last bytes (never a different allocation).
    static_assert(kAlign >= 2, "every block field is at least 2-byte aligned");
    const uint32_t misalign = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) & 3);  // 0 or 2
    const uint32_t* base = reinterpret_cast<const uint32_t*>(p - misalign);  // stays a global pointer
    const uint32_t shift = misalign * 8;
    uint32_t prev = base[0];
    for (int i = 0; i < kWords; ++i) {
      const uint32_t next = (i + 1 < kWords || shift != 0) ? base[i + 1] : 0u;
      out[i] = __funnelshift_r(prev, next, shift);
      prev = next;
    }
  }
#else
  std::memcpy(out, p, 4 * kWords);
#endif
}

TANDEM_HD inline uint16_t load_u16(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const uint16_t*>(p);
#else
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
#endif
}

// --- Sub-blocks ------------------------------------------------------------------------

// 32 elements: element i is byte (i % 4) of q[i / 4] as int8, times scale[i / 16], plus
// offset[i / 16] when the type has offsets.
struct SubBlock {
  uint32_t q[8];
  float scale[2];
  float offset[2];
};

// Per-type traits: block geometry, whether values carry an offset (d * q + m forms), and
// whether the two 16-element halves of a sub-block have separate scales (K-quants with
// 16-element groups). decode() fills one sub-block of the block starting at `b`.
template <DType T> struct QuantType;

// Low nibbles are elements 0..15, high nibbles 16..31 (Q4_0, Q4_1, Q5_*, IQ4_NL, IQ4_XS).
TANDEM_HD inline void split_nibbles(const uint32_t v[4], uint32_t* q) {
  for (int k = 0; k < 4; ++k) {
    q[k] = v[k] & 0x0F0F0F0Fu;
    q[k + 4] = (v[k] >> 4) & 0x0F0F0F0Fu;
  }
}

TANDEM_HD inline void set_scales(SubBlock& s, float scale) { s.scale[0] = s.scale[1] = scale; }

template <> struct QuantType<DType::Q4_0> {
  using Block = quant::BlockQ4_0;
  static constexpr int kElems = 32, kSubs = 1;
  static constexpr bool kOffset = false, kHalves = false;
  TANDEM_HD static void decode(const uint8_t* b, int, SubBlock& s) {
    uint32_t v[4];
    load_words<field_align(sizeof(Block), offsetof(Block, qs)), 4>(b + offsetof(Block, qs), v);
    split_nibbles(v, s.q);
    for (uint32_t& w : s.q) w = sub_bytes(w, 8);
    set_scales(s, half_bits_to_float(load_u16(b + offsetof(Block, d))));
  }
};

template <> struct QuantType<DType::Q4_1> {
  using Block = quant::BlockQ4_1;
  static constexpr int kElems = 32, kSubs = 1;
  static constexpr bool kOffset = true, kHalves = false;
  TANDEM_HD static void decode(const uint8_t* b, int, SubBlock& s) {
    uint32_t v[4];
    load_words<field_align(sizeof(Block), offsetof(Block, qs)), 4>(b + offsetof(Block, qs), v);
    split_nibbles(v, s.q);
    set_scales(s, half_bits_to_float(load_u16(b + offsetof(Block, d))));
    s.offset[0] = s.offset[1] = half_bits_to_float(load_u16(b + offsetof(Block, m)));
  }
};

// Q5_0 / Q5_1: the fifth bit of element j is bit j of qh.
template <class Block>
TANDEM_HD inline void decode_q5_codes(const uint8_t* b, uint32_t* q) {
  uint32_t v[4], qh;
  load_words<field_align(sizeof(Block), offsetof(Block, qs)), 4>(b + offsetof(Block, qs), v);
  load_words<field_align(sizeof(Block), offsetof(Block, qh)), 1>(b + offsetof(Block, qh), &qh);
  split_nibbles(v, q);
  for (int k = 0; k < 8; ++k) q[k] |= spread_bits_to_bit4((qh >> (4 * k)) & 0xFu);
}

template <> struct QuantType<DType::Q5_0> {
  using Block = quant::BlockQ5_0;
  static constexpr int kElems = 32, kSubs = 1;
  static constexpr bool kOffset = false, kHalves = false;
  TANDEM_HD static void decode(const uint8_t* b, int, SubBlock& s) {
    decode_q5_codes<Block>(b, s.q);
    for (uint32_t& w : s.q) w = sub_bytes(w, 16);
    set_scales(s, half_bits_to_float(load_u16(b + offsetof(Block, d))));
  }
};

template <> struct QuantType<DType::Q5_1> {
  using Block = quant::BlockQ5_1;
  static constexpr int kElems = 32, kSubs = 1;
  static constexpr bool kOffset = true, kHalves = false;
  TANDEM_HD static void decode(const uint8_t* b, int, SubBlock& s) {
    decode_q5_codes<Block>(b, s.q);
    set_scales(s, half_bits_to_float(load_u16(b + offsetof(Block, d))));
    s.offset[0] = s.offset[1] = half_bits_to_float(load_u16(b + offsetof(Block, m)));
  }
};

template <> struct QuantType<DType::Q8_0> {
  using Block = quant::BlockQ8_0;
  static constexpr int kElems = 32, kSubs = 1;
  static constexpr bool kOffset = false, kHalves = false;
  TANDEM_HD static void decode(const uint8_t* b, int, SubBlock& s) {
    load_words<field_align(sizeof(Block), offsetof(Block, qs)), 8>(b + offsetof(Block, qs), s.q);
    set_scales(s, half_bits_to_float(load_u16(b + offsetof(Block, d))));
  }
};

template <> struct QuantType<DType::IQ4_NL> {
  using Block = quant::BlockIQ4_NL;
  static constexpr int kElems = 32, kSubs = 1;
  static constexpr bool kOffset = false, kHalves = false;
  TANDEM_HD static void decode(const uint8_t* b, int, SubBlock& s) {
    uint32_t v[4];
    load_words<field_align(sizeof(Block), offsetof(Block, qs)), 4>(b + offsetof(Block, qs), v);
    split_nibbles(v, s.q);
    for (uint32_t& w : s.q) w = iq4_lookup4(w);
    set_scales(s, half_bits_to_float(load_u16(b + offsetof(Block, d))));
  }
};

// Q2_K: sub-block 4h + s is bits 2s..2s+1 of qs[32h .. 32h+31]; groups of 16 elements.
template <> struct QuantType<DType::Q2_K> {
  using Block = quant::BlockQ2_K;
  static constexpr int kElems = 256, kSubs = 8;
  static constexpr bool kOffset = true, kHalves = true;
  TANDEM_HD static void decode(const uint8_t* b, int sub, SubBlock& s) {
    uint32_t v[8];
    load_words<field_align(sizeof(Block), offsetof(Block, qs)), 8>(b + offsetof(Block, qs) + 32 * (sub / 4), v);
    const int shift = 2 * (sub % 4);
    for (int k = 0; k < 8; ++k) s.q[k] = (v[k] >> shift) & 0x03030303u;
    const float d = half_bits_to_float(load_u16(b + offsetof(Block, d)));
    const float dmin = half_bits_to_float(load_u16(b + offsetof(Block, dmin)));
    for (int h = 0; h < 2; ++h) {
      const uint8_t sc = b[offsetof(Block, scales) + 2 * sub + h];
      s.scale[h] = mul_rn(d, static_cast<float>(sc & 0x0F));
      s.offset[h] = -mul_rn(dmin, static_cast<float>(sc >> 4));  // dl*q - ml == dl*q + (-ml) exactly
    }
  }
};

// Q3_K: low bits as Q2_K, high bit of sub-block element l is bit `sub` of hmask[l]
// (clear means -4); codes -4..3. 6-bit group scales, minus 32.
template <> struct QuantType<DType::Q3_K> {
  using Block = quant::BlockQ3_K;
  static constexpr int kElems = 256, kSubs = 8;
  static constexpr bool kOffset = false, kHalves = true;
  TANDEM_HD static void decode(const uint8_t* b, int sub, SubBlock& s) {
    uint32_t lo[8], hm[8];
    load_words<field_align(sizeof(Block), offsetof(Block, qs)), 8>(b + offsetof(Block, qs) + 32 * (sub / 4), lo);
    load_words<field_align(sizeof(Block), offsetof(Block, hmask)), 8>(b + offsetof(Block, hmask), hm);
    const int shift = 2 * (sub % 4);
    for (int k = 0; k < 8; ++k) {
      const uint32_t low = (lo[k] >> shift) & 0x03030303u;
      const uint32_t high = ((hm[k] >> sub) & 0x01010101u) << 2;
      s.q[k] = sub_bytes(low | high, 4);
    }
    const float d = half_bits_to_float(load_u16(b + offsetof(Block, d)));
    const uint8_t* scales = b + offsetof(Block, scales);
    for (int h = 0; h < 2; ++h) {
      const int g = 2 * sub + h;
      const int low = (scales[g % 8] >> (4 * (g / 8))) & 0x0F;
      const int high = (scales[8 + g % 4] >> (2 * (g / 4))) & 0x03;
      s.scale[h] = mul_rn(d, static_cast<float>((low | (high << 4)) - 32));
    }
  }
};

// Q4_K / Q5_K: sub-block g is nibble g % 2 of qs[32*(g/2) .. +31] (plus bit g of qh[l]).
template <class Block, bool kHighBit>
TANDEM_HD inline void decode_q45_k(const uint8_t* b, int sub, SubBlock& s) {
  uint32_t v[8];
  load_words<field_align(sizeof(Block), offsetof(Block, qs)), 8>(b + offsetof(Block, qs) + 32 * (sub / 2), v);
  const int shift = 4 * (sub % 2);
  for (int k = 0; k < 8; ++k) s.q[k] = (v[k] >> shift) & 0x0F0F0F0Fu;
  if constexpr (kHighBit) {
    uint32_t qh[8];
    load_words<field_align(sizeof(Block), offsetof(Block, qh)), 8>(b + offsetof(Block, qh), qh);
    for (int k = 0; k < 8; ++k) s.q[k] |= ((qh[k] >> sub) & 0x01010101u) << 4;
  }
  int sc = 0, m = 0;
  quant::unpack_scale_min_k4(b + offsetof(Block, scales), sub, sc, m);
  set_scales(s, mul_rn(half_bits_to_float(load_u16(b + offsetof(Block, d))), static_cast<float>(sc)));
  s.offset[0] = s.offset[1] = -mul_rn(half_bits_to_float(load_u16(b + offsetof(Block, dmin))), static_cast<float>(m));
}

template <> struct QuantType<DType::Q4_K> {
  using Block = quant::BlockQ4_K;
  static constexpr int kElems = 256, kSubs = 8;
  static constexpr bool kOffset = true, kHalves = false;
  TANDEM_HD static void decode(const uint8_t* b, int sub, SubBlock& s) { decode_q45_k<Block, false>(b, sub, s); }
};

template <> struct QuantType<DType::Q5_K> {
  using Block = quant::BlockQ5_K;
  static constexpr int kElems = 256, kSubs = 8;
  static constexpr bool kOffset = true, kHalves = false;
  TANDEM_HD static void decode(const uint8_t* b, int sub, SubBlock& s) { decode_q45_k<Block, true>(b, sub, s); }
};

// Q6_K: sub-block 4h + s: low nibble (s / 2) of ql[64h + 32(s % 2) + l], high bits 2s..2s+1
// of qh[32h + l]; codes q - 32; int8 scales per 16 elements.
template <> struct QuantType<DType::Q6_K> {
  using Block = quant::BlockQ6_K;
  static constexpr int kElems = 256, kSubs = 8;
  static constexpr bool kOffset = false, kHalves = true;
  TANDEM_HD static void decode(const uint8_t* b, int sub, SubBlock& s) {
    const int h = sub / 4, sq = sub % 4;
    uint32_t lo[8], hi[8];
    load_words<field_align(sizeof(Block), offsetof(Block, ql)), 8>(b + offsetof(Block, ql) + 64 * h + 32 * (sq % 2), lo);
    load_words<field_align(sizeof(Block), offsetof(Block, qh)), 8>(b + offsetof(Block, qh) + 32 * h, hi);
    for (int k = 0; k < 8; ++k) {
      const uint32_t low = (lo[k] >> (4 * (sq / 2))) & 0x0F0F0F0Fu;
      const uint32_t high = ((hi[k] >> (2 * sq)) & 0x03030303u) << 4;
      s.q[k] = sub_bytes(low | high, 32);
    }
    const float d = half_bits_to_float(load_u16(b + offsetof(Block, d)));
    const int8_t* scales = reinterpret_cast<const int8_t*>(b + offsetof(Block, scales));
    for (int g = 0; g < 2; ++g) s.scale[g] = mul_rn(d, static_cast<float>(scales[2 * sub + g]));
  }
};

// IQ4_XS: group g uses qs[16g .. 16g+15] as IQ4_NL does; 6-bit scale minus 32.
template <> struct QuantType<DType::IQ4_XS> {
  using Block = quant::BlockIQ4_XS;
  static constexpr int kElems = 256, kSubs = 8;
  static constexpr bool kOffset = false, kHalves = false;
  TANDEM_HD static void decode(const uint8_t* b, int sub, SubBlock& s) {
    uint32_t v[4];
    load_words<field_align(sizeof(Block), offsetof(Block, qs)), 4>(b + offsetof(Block, qs) + 16 * sub, v);
    split_nibbles(v, s.q);
    for (uint32_t& w : s.q) w = iq4_lookup4(w);
    const int low = (b[offsetof(Block, scales_l) + sub / 2] >> (4 * (sub % 2))) & 0x0F;
    const int high = (load_u16(b + offsetof(Block, scales_h)) >> (2 * sub)) & 0x03;
    set_scales(s, mul_rn(half_bits_to_float(load_u16(b + offsetof(Block, d))), static_cast<float>((low | (high << 4)) - 32)));
  }
};

// Element i (0..31) of a decoded sub-block as the reference dequantizer computes it.
template <DType T>
TANDEM_HD inline float sub_value(const SubBlock& s, int i) {
  const float code = static_cast<float>(static_cast<int8_t>(s.q[i / 4] >> (8 * (i % 4))));
  const float v = mul_rn(s.scale[i / 16], code);
  if constexpr (QuantType<T>::kOffset) return add_rn(v, s.offset[i / 16]);
  return v;
}

// Decodes sub-block `sub` of the block at b into 32 floats.
template <DType T>
TANDEM_HD inline void decode_sub(const uint8_t* b, int sub, float* out) {
  SubBlock s;
  QuantType<T>::decode(b, sub, s);
  for (int i = 0; i < 32; ++i) out[i] = sub_value<T>(s, i);
}

// Decodes a whole block (kElems floats).
template <DType T>
TANDEM_HD inline void decode_block(const uint8_t* b, float* out) {
  for (int sub = 0; sub < QuantType<T>::kSubs; ++sub) decode_sub<T>(b, sub, out + 32 * sub);
}

// Element i of an F32 / F16 / BF16 row.
template <DType T>
TANDEM_HD inline float float_row_value(const uint8_t* row, int64_t i) {
  if constexpr (T == DType::F32) {
#ifdef __CUDA_ARCH__
    return reinterpret_cast<const float*>(row)[i];
#else
    float v;
    std::memcpy(&v, row + 4 * i, 4);
    return v;
#endif
  } else if constexpr (T == DType::F16) {
    return half_bits_to_float(load_u16(row + 2 * i));
  } else {
    static_assert(T == DType::BF16, "float rows are F32, F16 or BF16");
    return bf16_bits_to_float(load_u16(row + 2 * i));
  }
}

// --- 8-bit activations for the integer dot products --------------------------------------

// A block of 32 activations x is stored as int8 codes q = round_even(x / d) with
// d = max|x| / 127 (all zero when max|x| is 0), plus d and sum = d * sum(q).
TANDEM_HD inline float act_scale(float amax) { return amax / 127.0f; }
TANDEM_HD inline int act_code(float x, float d) {
  if (d == 0.0f) return 0;
#ifdef __CUDA_ARCH__
  const int q = __float2int_rn(x / d);
#else
  const int q = static_cast<int>(std::rint(x / d));  // the default rounding mode: nearest even
#endif
  return q < -127 ? -127 : q > 127 ? 127 : q;  // only a subnormal d, rounded down, goes past
}

// One sub-block's contribution to a dot product with a block of 8-bit activations:
// a = 32 codes (four per word), d = their scale, sum = d * sum(codes).
template <DType T>
TANDEM_HD inline float dot_sub(const SubBlock& w, const uint32_t* a, float d, float sum) {
  using Q = QuantType<T>;
  int lo = 0, hi = 0;
  for (int k = 0; k < 4; ++k) lo = dp4a(static_cast<int>(w.q[k]), static_cast<int>(a[k]), lo);
  for (int k = 4; k < 8; ++k) hi = dp4a(static_cast<int>(w.q[k]), static_cast<int>(a[k]), hi);
  if constexpr (Q::kHalves) {
    float r = (w.scale[0] * static_cast<float>(lo) + w.scale[1] * static_cast<float>(hi)) * d;
    if constexpr (Q::kOffset) {  // per-half sums of the activation codes
      int s0 = 0, s1 = 0;
      for (int k = 0; k < 4; ++k) s0 = dp4a(static_cast<int>(a[k]), 0x01010101, s0);
      for (int k = 4; k < 8; ++k) s1 = dp4a(static_cast<int>(a[k]), 0x01010101, s1);
      r += (w.offset[0] * static_cast<float>(s0) + w.offset[1] * static_cast<float>(s1)) * d;
    }
    return r;
  } else {
    float r = w.scale[0] * static_cast<float>(lo + hi) * d;
    if constexpr (Q::kOffset) r += w.offset[0] * sum;
    return r;
  }
}

}  // namespace tandem::cuda
