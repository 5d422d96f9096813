// Scalar reference quantizers. The simple types mirror gguf-py's numpy code operation
// for operation (float32 throughout, same rounding: truncation after a +0.5 / +8.5 /
// +16.5 offset, round-half-away for Q8_0). The K-quants implement llama.cpp's
// reference search algorithms: a weighted least-squares fit of scale and min per
// group for Q4_K/Q5_K, a scale sweep for Q6_K, then 6/8-bit quantization of the
// group scales against one f16 super-block scale.
#include "quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "quant/blocks.h"
#include "quant/quant_internal.h"

namespace tandem::quant {
namespace {

using detail::nearest_int;
using detail::store_block;

// Float -> int truncation toward zero, clamped to [lo, hi]; NaN gives lo. (The numpy
// reference casts to uint8 and clips; for in-range values that is the same thing.)
inline int trunc_clamped(float v, int lo, int hi) {
  if (!(v >= static_cast<float>(lo))) return lo;
  if (!(v <= static_cast<float>(hi))) return hi;
  return static_cast<int>(v);
}

// The element with the largest magnitude (the first one on ties), sign kept.
inline float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  return max;
}

inline float safe_inverse(float d) { return d == 0.0f ? 0.0f : 1.0f / d; }

// Packs 32 codes the Q4_0 way: element j low nibble, element j+16 high nibble.
inline void pack_nibbles32(const int* q, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
}

// Fifth bits of 32 codes, as a little-endian 32-bit mask.
inline void pack_high_bits32(const int* q, uint8_t* qh) {
  std::memset(qh, 0, 4);
  for (int j = 0; j < 32; ++j) qh[j / 8] |= static_cast<uint8_t>(((q[j] >> 4) & 1) << (j % 8));
}

// ---- Simple 32-element types -------------------------------------------------------

// Symmetric types: d = max / -half_range (max keeps its sign, so it maps to code 0),
// q = trunc(x / d + half_range + 0.5).
template <typename Block, int kHalfRange>
void quant_symmetric(const float* x, void* dst, int64_t nb) {
  constexpr int kMaxCode = 2 * kHalfRange - 1;
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    const float d = signed_absmax(x, 32) / static_cast<float>(-kHalfRange);
    const float id = safe_inverse(d);
    int q[32];
    for (int j = 0; j < 32; ++j) {
      q[j] = trunc_clamped(x[j] * id + (static_cast<float>(kHalfRange) + 0.5f), 0, kMaxCode);
    }
    Block b{};
    b.d = f32_to_f16(d);
    pack_nibbles32(q, b.qs);
    if constexpr (kHalfRange == 16) pack_high_bits32(q, b.qh);
    store_block(dst, i, b);
  }
}

// Affine types: d = (max - min) / max_code, q = trunc((x - min) / d + 0.5), x ~ d*q + min.
template <typename Block, int kMaxCode>
void quant_affine(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    const float d = (max - min) / static_cast<float>(kMaxCode);
    const float id = safe_inverse(d);
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = trunc_clamped((x[j] - min) * id + 0.5f, 0, kMaxCode);
    Block b{};
    b.d = f32_to_f16(d);
    b.m = f32_to_f16(min);
    pack_nibbles32(q, b.qs);
    if constexpr (kMaxCode == 31) pack_high_bits32(q, b.qh);
    store_block(dst, i, b);
  }
}

void quant_q8_0(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = safe_inverse(d);
    BlockQ8_0 b{};
    b.d = f32_to_f16(d);
    // std::round rounds half away from zero, like ggml's roundf and gguf-py's np_roundf.
    for (int j = 0; j < 32; ++j) {
      b.qs[j] = static_cast<int8_t>(trunc_clamped(std::round(x[j] * id), -128, 127));
    }
    store_block(dst, i, b);
  }
}

// ---- K-quant helpers ---------------------------------------------------------------

// Weighted least-squares fit of x ~ scale * L - offset with L in 0..nmax and offset >= 0
// (llama.cpp's make_qkx2_quants). It first rounds with the plain range-derived scale,
// then tries nstep+1 slightly different grid densities (nmax + rmin + rdelta*k codes
// across the range), refits scale and min in closed form for each, and keeps the
// candidate with the least weighted squared error. Returns the scale; *offset gets
// the (non-negative) amount to subtract.
float fit_scale_min(const float* x, const float* w, int n, int nmax, float rmin, float rdelta,
                    int nstep, uint8_t* L, float* offset) {
  float min = x[0], max = x[0];
  float sum_w = 0.0f, sum_x = 0.0f;
  for (int i = 0; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;  // the offset only ever shifts values down
  if (max == min) {
    std::fill(L, L + n, uint8_t{0});
    *offset = -min;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best_error += w[i] * (diff * diff);
  }
  uint8_t trial[32];
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * static_cast<float>(step) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      const float wl = w[i] * static_cast<float>(l);
      sum_l += wl;
      sum_l2 += wl * static_cast<float>(l);
      sum_xl += wl * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) continue;
    float trial_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float trial_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (trial_min > 0) {  // a positive min cannot be stored; refit the scale alone
      trial_min = 0;
      trial_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = trial_scale * trial[i] + trial_min - x[i];
      error += w[i] * (diff * diff);
    }
    if (error < best_error) {
      std::copy(trial, trial + n, L);
      best_error = error;
      scale = trial_scale;
      min = trial_min;
    }
  }
  *offset = -min;
  return scale;
}

// Symmetric fit x ~ scale * (L - nmax) with L - nmax in -nmax..nmax-1, weights x^2
// (llama.cpp's make_qx_quants, rmse_type 1, no importance weights). Tries 19 scales
// around nmax/absmax and keeps the one maximising sumlx^2/suml2 (least squared error).
float fit_symmetric(const float* x, int n, int nmax, int8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < 1e-15f) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  // Quantizes with iscale, returning the weighted sums (and codes if out != nullptr).
  auto evaluate = [&](float iscale, float& sumlx, float& suml2, int8_t* out) {
    sumlx = 0;
    suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      if (out) out[i] = static_cast<int8_t>(l + nmax);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * static_cast<float>(l);
      suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
  };
  float sumlx, suml2;
  evaluate(static_cast<float>(-nmax) / max, sumlx, suml2, L);
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int k = -9; k <= 9; ++k) {
    if (k == 0) continue;
    const float iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(k)) / max;
    evaluate(iscale, sumlx, suml2, nullptr);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      evaluate(iscale, sumlx, suml2, L);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Packs eight 6-bit scales and mins into Q4_K/Q5_K's 12-byte layout (see blocks.h).
void pack_scale_min_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* out) {
  std::memset(out, 0, 12);
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>(ls[j] | ((ls[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>(lm[j] | ((lm[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((ls[j + 4] & 0x0F) | ((lm[j + 4] & 0x0F) << 4));
  }
}

// Quantizes one super-block to Q4_K (kMaxCode 15) or Q5_K (kMaxCode 31) codes L[256],
// filling d, dmin and scales of the block.
template <typename Block, int kMaxCode>
void quant_k4_codes(const float* x, Block& b, uint8_t* L) {
  // Search parameters of llama.cpp's reference: more, coarser steps for 4 bits.
  constexpr float kRmin = kMaxCode == 15 ? -1.0f : -0.5f;
  constexpr int kSteps = kMaxCode == 15 ? 20 : 15;
  float scales[8], mins[8];
  float max_scale = 0, max_min = 0;
  for (int g = 0; g < 8; ++g) {
    const float* xg = x + 32 * g;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xg[l] * xg[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    // Weights favour large values but never vanish for small ones.
    float w[32];
    for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xg[l]);
    scales[g] = fit_scale_min(xg, w, 32, kMaxCode, kRmin, 0.1f, kSteps, L + 32 * g, &mins[g]);
    max_scale = std::max(max_scale, scales[g]);
    max_min = std::max(max_min, mins[g]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t ls[8], lm[8];
  for (int g = 0; g < 8; ++g) {
    // The reference stores through uint8_t before clamping; keep that wrap-around.
    ls[g] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[g])));
    lm[g] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[g])));
  }
  pack_scale_min_k4(ls, lm, b.scales);
  b.d = f32_to_f16(max_scale / 63.f);
  b.dmin = f32_to_f16(max_min / 63.f);

  // Re-round every value against the scales actually stored.
  const float d_all = f16_to_f32(b.d), dmin_all = f16_to_f32(b.dmin);
  for (int g = 0; g < 8; ++g) {
    const float d = d_all * static_cast<float>(ls[g]);
    if (d == 0) continue;
    const float dm = dmin_all * static_cast<float>(lm[g]);
    for (int l = 0; l < 32; ++l) {
      L[32 * g + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * g + l] + dm) / d), 0, kMaxCode));
    }
  }
}

void quant_q4_k(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    BlockQ4_K b{};
    uint8_t L[kQK];
    quant_k4_codes<BlockQ4_K, 15>(x, b, L);
    // Group 2c in the low nibbles of qs[32c..], group 2c+1 in the high nibbles.
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        b.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
      }
    }
    store_block(dst, i, b);
  }
}

void quant_q5_k(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    BlockQ5_K b{};
    uint8_t L[kQK];
    quant_k4_codes<BlockQ5_K, 31>(x, b, L);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
        b.qs[32 * c + l] = static_cast<uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
      }
    }
    for (int e = 0; e < kQK; ++e) b.qh[e % 32] |= static_cast<uint8_t>((L[e] >> 4) << (e / 32));
    store_block(dst, i, b);
  }
}

void quant_q6_k(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    BlockQ6_K b{};  // an all-zero block is also the answer for an all-zero input
    int8_t L[kQK];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int g = 0; g < 16; ++g) {
      scales[g] = fit_symmetric(x + 16 * g, 16, 32, L + 16 * g);
      if (std::fabs(scales[g]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[g]);
        max_scale = scales[g];
      }
    }
    if (max_abs_scale >= 1e-15f) {
      // The largest scale maps to -128, so its sign can flip the whole block's d.
      const float iscale = -128.f / max_scale;
      b.d = f32_to_f16(1 / iscale);
      for (int g = 0; g < 16; ++g) {
        b.scales[g] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[g])));
      }
      const float d_all = f16_to_f32(b.d);
      for (int g = 0; g < 16; ++g) {
        const float d = d_all * static_cast<float>(b.scales[g]);
        if (d == 0) continue;
        for (int l = 0; l < 16; ++l) {
          L[16 * g + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * g + l] / d), -32, 31) + 32);
        }
      }
      for (int e = 0; e < kQK; ++e) {
        const int h = e / 128, s = (e / 32) % 4, l = e % 32;
        const int q = L[e];
        b.ql[64 * h + 32 * (s % 2) + l] |= static_cast<uint8_t>((q & 0x0F) << (4 * (s / 2)));
        b.qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * s));
      }
    }
    store_block(dst, i, b);
  }
}

void quant_q8_k(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    BlockQ8_K b{};
    const float max = signed_absmax(x, kQK);
    if (max != 0) {
      // -127 (not -128) keeps every code in -127..127.
      const float iscale = -127.f / max;
      for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
      for (int g = 0; g < 16; ++g) {
        int sum = 0;
        for (int l = 0; l < 16; ++l) sum += b.qs[16 * g + l];
        b.bsums[g] = static_cast<int16_t>(sum);
      }
      b.d = 1 / iscale;
    }
    store_block(dst, i, b);
  }
}

// ---- Plain types -------------------------------------------------------------------

template <uint16_t (*Convert)(float)>
void quant_16bit(const float* x, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = Convert(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

}  // namespace

bool can_quantize(DType type) {
  switch (type) {
    case DType::F32: case DType::F16: case DType::BF16:
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::Q8_K:
      return true;
    default:
      return false;
  }
}

size_t quantize_row(DType type, const float* src, void* dst, int64_t n) {
  if (!can_quantize(type)) fail("quantize: type {} is not supported", dtype_name(type));
  const int64_t nb = detail::blocks_in_row(type, n, "quantize");
  const size_t bytes = static_cast<size_t>(nb) * dtype_info(type).block_bytes;
  if (nb == 0) return 0;
  switch (type) {
    case DType::F32: std::memcpy(dst, src, bytes); break;
    case DType::F16: quant_16bit<f32_to_f16>(src, dst, n); break;
    case DType::BF16: quant_16bit<f32_to_bf16>(src, dst, n); break;
    case DType::Q4_0: quant_symmetric<BlockQ4_0, 8>(src, dst, nb); break;
    case DType::Q5_0: quant_symmetric<BlockQ5_0, 16>(src, dst, nb); break;
    case DType::Q4_1: quant_affine<BlockQ4_1, 15>(src, dst, nb); break;
    case DType::Q5_1: quant_affine<BlockQ5_1, 31>(src, dst, nb); break;
    case DType::Q8_0: quant_q8_0(src, dst, nb); break;
    case DType::Q4_K: quant_q4_k(src, dst, nb); break;
    case DType::Q5_K: quant_q5_k(src, dst, nb); break;
    case DType::Q6_K: quant_q6_k(src, dst, nb); break;
    case DType::Q8_K: quant_q8_k(src, dst, nb); break;
    default: fail("quantize: type {} is not supported", dtype_name(type));
  }
  return bytes;
}

}  // namespace tandem::quant
