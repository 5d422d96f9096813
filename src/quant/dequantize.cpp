// Scalar reference dequantizers. Each one reproduces gguf-py's numpy formula in float32,
// including where a product is rounded before the next operation: for the K-quants the
// group scale d*sc (and dmin*m) is formed first, then multiplied by q (and the min term
// subtracted), each step rounded to float32 separately.
#include "quant/dequantize.h"

#include <cstring>

#include "core/half.h"
#include "quant/blocks.h"
#include "quant/quant_internal.h"

namespace tandem::quant {
namespace {

using detail::load_block;

// Nibble j of the 16-byte Q4_0-style layout: elements 0..15 are low nibbles, 16..31 high.
inline int nibble32(const uint8_t* qs, int j) {
  return j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
}

// The fifth bit of element j in Q5_0 / Q5_1 (bit j of qh as a little-endian uint32).
inline int q5_high_bit(const uint8_t* qh, int j) { return (qh[j / 8] >> (j % 8)) & 1; }

void dequant_q4_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ4_0>(src, i);
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(nibble32(b.qs, j) - 8);
  }
}

void dequant_q4_1(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ4_1>(src, i);
    const float d = f16_to_f32(b.d);
    const float m = f16_to_f32(b.m);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(nibble32(b.qs, j)) + m;
  }
}

void dequant_q5_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ5_0>(src, i);
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < 32; ++j) {
      const int q = nibble32(b.qs, j) | (q5_high_bit(b.qh, j) << 4);
      y[j] = d * static_cast<float>(q - 16);
    }
  }
}

void dequant_q5_1(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ5_1>(src, i);
    const float d = f16_to_f32(b.d);
    const float m = f16_to_f32(b.m);
    for (int j = 0; j < 32; ++j) {
      const int q = nibble32(b.qs, j) | (q5_high_bit(b.qh, j) << 4);
      y[j] = d * static_cast<float>(q) + m;
    }
  }
}

void dequant_q8_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ8_0>(src, i);
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(b.qs[j]);
  }
}

void dequant_q2_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ2_K>(src, i);
    const float d = f16_to_f32(b.d);
    const float dmin = f16_to_f32(b.dmin);
    for (int e = 0; e < kQK; ++e) {
      const int h = e / 128, s = (e / 32) % 4, l = e % 32;
      const int q = (b.qs[32 * h + l] >> (2 * s)) & 3;
      const uint8_t sc = b.scales[e / 16];
      const float dl = d * static_cast<float>(sc & 0x0F);
      const float ml = dmin * static_cast<float>(sc >> 4);
      y[e] = dl * static_cast<float>(q) - ml;
    }
  }
}

void dequant_q3_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ3_K>(src, i);
    const float d = f16_to_f32(b.d);
    float group_scale[16];
    for (int g = 0; g < 16; ++g) {
      const int low = (b.scales[g % 8] >> (4 * (g / 8))) & 0x0F;
      const int high = (b.scales[8 + g % 4] >> (2 * (g / 4))) & 0x03;
      group_scale[g] = d * static_cast<float>((low | (high << 4)) - 32);
    }
    for (int e = 0; e < kQK; ++e) {
      const int h = e / 128, s = (e / 32) % 4, l = e % 32;
      const int low = (b.qs[32 * h + l] >> (2 * s)) & 3;
      const int high_set = (b.hmask[l] >> (e / 32)) & 1;
      const int q = low - (high_set ? 0 : 4);
      y[e] = group_scale[e / 16] * static_cast<float>(q);
    }
  }
}

// Q4_K and Q5_K share everything except where the quant bits come from.
template <typename Block>
void dequant_q45_k(const void* src, float* y, int64_t nb) {
  constexpr bool kHasHighBit = Block::kType == DType::Q5_K;
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<Block>(src, i);
    const float d = f16_to_f32(b.d);
    const float dmin = f16_to_f32(b.dmin);
    for (int g = 0; g < 8; ++g) {
      int sc = 0, m = 0;
      unpack_scale_min_k4(b.scales, g, sc, m);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(m);
      const uint8_t* qs = b.qs + 32 * (g / 2);
      const int shift = 4 * (g % 2);
      for (int l = 0; l < 32; ++l) {
        int q = (qs[l] >> shift) & 0x0F;
        if constexpr (kHasHighBit) q |= ((b.qh[l] >> g) & 1) << 4;
        y[32 * g + l] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

void dequant_q6_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ6_K>(src, i);
    const float d = f16_to_f32(b.d);
    for (int e = 0; e < kQK; ++e) {
      const int h = e / 128, s = (e / 32) % 4, l = e % 32;
      const int low = (b.ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0F;
      const int high = (b.qh[32 * h + l] >> (2 * s)) & 0x03;
      const float dl = d * static_cast<float>(b.scales[e / 16]);
      y[e] = dl * static_cast<float>((low | (high << 4)) - 32);
    }
  }
}

void dequant_q8_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ8_K>(src, i);
    for (int j = 0; j < kQK; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
  }
}

void dequant_iq4_nl(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockIQ4_NL>(src, i);
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(kIQ4NLValues[nibble32(b.qs, j)]);
  }
}

void dequant_iq4_xs(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockIQ4_XS>(src, i);
    const float d = f16_to_f32(b.d);
    for (int g = 0; g < 8; ++g) {
      const int low = (b.scales_l[g / 2] >> (4 * (g % 2))) & 0x0F;
      const int high = (b.scales_h >> (2 * g)) & 0x03;
      const float dl = d * static_cast<float>((low | (high << 4)) - 32);
      for (int j = 0; j < 32; ++j) {
        y[32 * g + j] = dl * static_cast<float>(kIQ4NLValues[nibble32(b.qs + 16 * g, j)]);
      }
    }
  }
}

void dequant_f16(const void* src, float* y, int64_t n) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, bytes + 2 * i, 2);
    y[i] = f16_to_f32(h);
  }
}

void dequant_bf16(const void* src, float* y, int64_t n) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, bytes + 2 * i, 2);
    y[i] = bf16_to_f32(h);
  }
}

}  // namespace

bool can_dequantize(DType type) {
  switch (type) {
    case DType::F32: case DType::F16: case DType::BF16:
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
    case DType::Q8_K: case DType::IQ4_NL: case DType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  if (!can_dequantize(type)) fail("dequantize: type {} is not supported", dtype_name(type));
  const int64_t nb = detail::blocks_in_row(type, n, "dequantize");
  if (nb == 0) return;
  switch (type) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); break;
    case DType::F16: dequant_f16(src, dst, n); break;
    case DType::BF16: dequant_bf16(src, dst, n); break;
    case DType::Q4_0: dequant_q4_0(src, dst, nb); break;
    case DType::Q4_1: dequant_q4_1(src, dst, nb); break;
    case DType::Q5_0: dequant_q5_0(src, dst, nb); break;
    case DType::Q5_1: dequant_q5_1(src, dst, nb); break;
    case DType::Q8_0: dequant_q8_0(src, dst, nb); break;
    case DType::Q2_K: dequant_q2_k(src, dst, nb); break;
    case DType::Q3_K: dequant_q3_k(src, dst, nb); break;
    case DType::Q4_K: dequant_q45_k<BlockQ4_K>(src, dst, nb); break;
    case DType::Q5_K: dequant_q45_k<BlockQ5_K>(src, dst, nb); break;
    case DType::Q6_K: dequant_q6_k(src, dst, nb); break;
    case DType::Q8_K: dequant_q8_k(src, dst, nb); break;
    case DType::IQ4_NL: dequant_iq4_nl(src, dst, nb); break;
    case DType::IQ4_XS: dequant_iq4_xs(src, dst, nb); break;
    default: fail("dequantize: type {} is not supported", dtype_name(type));
  }
}

}  // namespace tandem::quant
