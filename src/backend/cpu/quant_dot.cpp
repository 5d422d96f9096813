// Scalar reference kernels and the dispatch between paths. The scalar kernels decode a
// block to its integer codes and scales and sum in integers per group, the same
// arithmetic the SIMD kernels do, so the two differ only in float summation order.
#include "backend/cpu/quant_dot.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/cpu_features.h"
#include "core/half.h"
#include "quant/blocks.h"
#include "quant/quantize.h"

namespace tandem::cpu {

using namespace tandem::quant;

namespace {

template <typename Block>
Block load(const void* base, int64_t i) {
  Block b;
  std::memcpy(&b, static_cast<const uint8_t*>(base) + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
  return b;
}

// ---- Activation quantizers ----------------------------------------------------------
// Q8_0/Q8_1 round to nearest-even like ggml's x86 path (its SIMD quantizer, not the
// round-half-away reference), so tandem's integer sums see the codes llama.cpp sees.

// 32 floats -> codes; returns d and sets sum to the sum of the codes.
float quantize_block32(const float* x, int8_t* qs, int& sum) {
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f, id = d != 0 ? 127.0f / amax : 0.0f;
  sum = 0;
  for (int i = 0; i < 32; ++i) {
    qs[i] = static_cast<int8_t>(std::nearbyint(x[i] * id));
    sum += qs[i];
  }
  return d;
}

void quantize_q8_0_scalar(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_0*>(y);
  int sum;
  for (int64_t b = 0; b < n / 32; ++b) {
    out[b].d = f32_to_f16(quantize_block32(x + 32 * b, out[b].qs, sum));
    set_q8_0_block_tail(static_cast<uint8_t*>(y), n, b, sum, out[b].d);
  }
  clear_q8_0_tail_padding(static_cast<uint8_t*>(y), n);
}

void quantize_q8_1_scalar(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_1*>(y);
  int sum;
  for (int64_t b = 0; b < n / 32; ++b) {
    const float d = quantize_block32(x + 32 * b, out[b].qs, sum);
    out[b].d = f32_to_f16(d);
    out[b].s = f32_to_f16(d * static_cast<float>(sum));
  }
}

}  // namespace

// The scalar path quantizes Q8_K with ggml's reference (AVX2 has its own, giving the same bytes).
void quantize_q8_k(const float* x, void* y, int64_t n) { quantize_row(DType::Q8_K, x, y, n); }

namespace {

// ---- Integer view of one weight block -------------------------------------------------

// A block as integer codes q[i] with one integer scale (and min) per group of `group`
// elements: element i = d * sc[g] * q[i] - dmin * mn[g]; for the 32-element types
// sc = 1, and Q4_1/Q5_1 carry their float min in `m`.
struct IntBlock {
  int q[256];
  int sc[16];
  int mn[16];
  float d = 0, dmin = 0, m = 0;
  int group = 32;
};

template <typename Block>
void decode_nibbles(const Block& b, IntBlock& out, int offset) {
  for (int j = 0; j < 16; ++j) {
    out.q[j] = (b.qs[j] & 0x0F) - offset;
    out.q[j + 16] = (b.qs[j] >> 4) - offset;
  }
}

template <typename Block>
void add_fifth_bit(const Block& b, IntBlock& out) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 32; ++j) out.q[j] += static_cast<int>((qh >> j) & 1) << 4;
}

void decode(DType type, const void* row, int64_t i, IntBlock& o) {
  std::fill(o.sc, o.sc + 16, 1);
  std::fill(o.mn, o.mn + 16, 0);
  o.group = 32;
  switch (type) {
    case DType::Q4_0: { const auto b = load<BlockQ4_0>(row, i); o.d = f16_to_f32(b.d); decode_nibbles(b, o, 8); break; }
    case DType::Q4_1: {
      const auto b = load<BlockQ4_1>(row, i);
      o.d = f16_to_f32(b.d), o.m = f16_to_f32(b.m);
      decode_nibbles(b, o, 0);
      break;
    }
    case DType::Q5_0: {
      const auto b = load<BlockQ5_0>(row, i);
      o.d = f16_to_f32(b.d);
      decode_nibbles(b, o, 0);
      add_fifth_bit(b, o);
      for (int j = 0; j < 32; ++j) o.q[j] -= 16;
      break;
    }
    case DType::Q5_1: {
      const auto b = load<BlockQ5_1>(row, i);
      o.d = f16_to_f32(b.d), o.m = f16_to_f32(b.m);
      decode_nibbles(b, o, 0);
      add_fifth_bit(b, o);
      break;
    }
    case DType::Q8_0: {
      const auto b = load<BlockQ8_0>(row, i);
      o.d = f16_to_f32(b.d);
      for (int j = 0; j < 32; ++j) o.q[j] = b.qs[j];
      break;
    }
    case DType::IQ4_NL: {
      const auto b = load<BlockIQ4_NL>(row, i);
      o.d = f16_to_f32(b.d);
      for (int j = 0; j < 16; ++j) {
        o.q[j] = kIQ4NLValues[b.qs[j] & 0x0F];
        o.q[j + 16] = kIQ4NLValues[b.qs[j] >> 4];
      }
      break;
    }
    case DType::Q2_K: {
      const auto b = load<BlockQ2_K>(row, i);
      o.d = f16_to_f32(b.d), o.dmin = f16_to_f32(b.dmin), o.group = 16;
      for (int g = 0; g < 16; ++g) o.sc[g] = b.scales[g] & 0x0F, o.mn[g] = b.scales[g] >> 4;
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, s = (e / 32) % 4, l = e % 32;
        o.q[e] = (b.qs[32 * h + l] >> (2 * s)) & 3;
      }
      break;
    }
    case DType::Q3_K: {
      const auto b = load<BlockQ3_K>(row, i);
      o.d = f16_to_f32(b.d), o.group = 16;
      for (int g = 0; g < 16; ++g) {
        const int low = (b.scales[g % 8] >> (4 * (g / 8))) & 0x0F;
        const int high = (b.scales[8 + g % 4] >> (2 * (g / 4))) & 3;
        o.sc[g] = (low | (high << 4)) - 32;
      }
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, s = (e / 32) % 4, l = e % 32;
        const int low2 = (b.qs[32 * h + l] >> (2 * s)) & 3;
        const int hbit = (b.hmask[l] >> (e / 32)) & 1;
        o.q[e] = low2 - (hbit ? 0 : 4);
      }
      break;
    }
    case DType::Q4_K: case DType::Q5_K: {
      const bool five = type == DType::Q5_K;
      const auto b4 = five ? BlockQ4_K{} : load<BlockQ4_K>(row, i);
      const auto b5 = five ? load<BlockQ5_K>(row, i) : BlockQ5_K{};
      const uint8_t* scales = five ? b5.scales : b4.scales;
      const uint8_t* qs = five ? b5.qs : b4.qs;
      o.d = f16_to_f32(five ? b5.d : b4.d), o.dmin = f16_to_f32(five ? b5.dmin : b4.dmin);
      for (int g = 0; g < 8; ++g) unpack_scale_min_k4(scales, g, o.sc[g], o.mn[g]);
      for (int g = 0; g < 8; ++g) {
        for (int l = 0; l < 32; ++l) {
          int q = (qs[32 * (g / 2) + l] >> (4 * (g % 2))) & 0x0F;
          if (five) q |= ((b5.qh[l] >> g) & 1) << 4;
          o.q[32 * g + l] = q;
        }
      }
      break;
    }
    case DType::Q6_K: {
      const auto b = load<BlockQ6_K>(row, i);
      o.d = f16_to_f32(b.d), o.group = 16;
      for (int g = 0; g < 16; ++g) o.sc[g] = b.scales[g];
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, s = (e / 32) % 4, l = e % 32;
        const int low = (b.ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0F;
        const int high = (b.qh[32 * h + l] >> (2 * s)) & 3;
        o.q[e] = (low | (high << 4)) - 32;
      }
      break;
    }
    case DType::IQ4_XS: {
      const auto b = load<BlockIQ4_XS>(row, i);
      o.d = f16_to_f32(b.d);
      for (int g = 0; g < 8; ++g) {
        const int low = (b.scales_l[g / 2] >> (4 * (g % 2))) & 0x0F;
        const int high = (b.scales_h >> (2 * g)) & 3;
        o.sc[g] = (low | (high << 4)) - 32;
        for (int j = 0; j < 16; ++j) {
          o.q[32 * g + j] = kIQ4NLValues[b.qs[16 * g + j] & 0x0F];
          o.q[32 * g + j + 16] = kIQ4NLValues[b.qs[16 * g + j] >> 4];
        }
      }
      break;
    }
    default: break;
  }
}

// One weight row . one activation row.
float dot_row_scalar(DType type, DType act, int64_t n, const void* w, const void* a) {
  IntBlock blk;
  double sum = 0;
  if (act == DType::Q8_K) {
    for (int64_t i = 0; i < n / 256; ++i) {
      decode(type, w, i, blk);
      const auto ab = load<BlockQ8_K>(a, i);
      int64_t scaled = 0, mins = 0;
      for (int g = 0; g < 256 / blk.group; ++g) {
        int s = 0, asum = 0;
        for (int l = 0; l < blk.group; ++l) {
          s += blk.q[g * blk.group + l] * ab.qs[g * blk.group + l];
          asum += ab.qs[g * blk.group + l];
        }
        scaled += static_cast<int64_t>(blk.sc[g]) * s;
        mins += static_cast<int64_t>(blk.mn[g]) * asum;
      }
      sum += ab.d * (blk.d * static_cast<float>(scaled) - blk.dmin * static_cast<float>(mins));
    }
  } else {
    const bool with_min = act == DType::Q8_1;
    for (int64_t i = 0; i < n / 32; ++i) {
      decode(type, w, i, blk);
      int s = 0;
      float da, sa = 0;
      const int8_t* qa;
      BlockQ8_0 a0;
      BlockQ8_1 a1;
      if (with_min) {
        a1 = load<BlockQ8_1>(a, i);
        da = f16_to_f32(a1.d), sa = f16_to_f32(a1.s), qa = a1.qs;
      } else {
        a0 = load<BlockQ8_0>(a, i);
        da = f16_to_f32(a0.d), qa = a0.qs;
      }
      for (int j = 0; j < 32; ++j) s += blk.q[j] * qa[j];
      sum += blk.d * da * static_cast<float>(s) + blk.m * sa;
    }
  }
  return static_cast<float>(sum);
}

template <DType W, DType A>
void dot_scalar(int64_t n, const void* w, const void* a, size_t a_stride, int n_cols, float* out,
                int64_t out_stride) {
  for (int c = 0; c < n_cols; ++c) {
    out[c * out_stride] = dot_row_scalar(W, A, n, w, static_cast<const uint8_t*>(a) + c * a_stride);
  }
}

}  // namespace

DType activation_type_for(DType weight) {
  switch (weight) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::IQ4_NL: return DType::Q8_0;
    case DType::Q4_1: case DType::Q5_1: return DType::Q8_1;
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
    case DType::IQ4_XS: return DType::Q8_K;
    default: return DType::F32;
  }
}

namespace {

QuantizeRowFn activation_quantizer_scalar(DType act) {
  switch (act) {
    case DType::Q8_0: return quantize_q8_0_scalar;
    case DType::Q8_1: return quantize_q8_1_scalar;
    case DType::Q8_K: return quantize_q8_k;
    default: return nullptr;
  }
}

}  // namespace

QuantDotKernel quant_dot_kernel_scalar(DType weight) {
  QuantDotKernel k;
  k.weight = weight;
  k.activation = activation_type_for(weight);
  k.quantize = activation_quantizer_scalar(k.activation);
  switch (weight) {
#define TANDEM_SCALAR_DOT(T, A) \
  case DType::T: k.dot = dot_scalar<DType::T, DType::A>; break;
    TANDEM_SCALAR_DOT(Q4_0, Q8_0)
    TANDEM_SCALAR_DOT(Q5_0, Q8_0)
    TANDEM_SCALAR_DOT(Q8_0, Q8_0)
    TANDEM_SCALAR_DOT(IQ4_NL, Q8_0)
    TANDEM_SCALAR_DOT(Q4_1, Q8_1)
    TANDEM_SCALAR_DOT(Q5_1, Q8_1)
    TANDEM_SCALAR_DOT(Q2_K, Q8_K)
    TANDEM_SCALAR_DOT(Q3_K, Q8_K)
    TANDEM_SCALAR_DOT(Q4_K, Q8_K)
    TANDEM_SCALAR_DOT(Q5_K, Q8_K)
    TANDEM_SCALAR_DOT(Q6_K, Q8_K)
    TANDEM_SCALAR_DOT(IQ4_XS, Q8_K)
#undef TANDEM_SCALAR_DOT
    default: return QuantDotKernel{};
  }
  switch (weight) {
#define TANDEM_X8(T, t) \
  case DType::T: k.repack_x8 = repack_##t##_x8; k.unpack_x8 = unpack_##t##_x8; k.dot_x8 = dot_##t##_x8_scalar; break;
    TANDEM_X8(Q4_0, q4_0)
    TANDEM_X8(Q5_0, q5_0)
    TANDEM_X8(Q8_0, q8_0)
    TANDEM_X8(Q4_K, q4_k)
    TANDEM_X8(Q5_K, q5_k)
    TANDEM_X8(Q6_K, q6_k)
    TANDEM_X8(IQ4_XS, iq4_xs)
#undef TANDEM_X8
    case DType::IQ4_NL:  // Q4_0's layout, its own values
      k.repack_x8 = repack_q4_0_x8;
      k.unpack_x8 = unpack_q4_0_x8;
      k.dot_x8 = dot_iq4_nl_x8_scalar;
      break;
    default: break;
  }
  return k;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx_vnni: return "avx-vnni";
    case Isa::avx512_vnni: return "avx512-vnni";
  }
  return "?";
}

namespace {

bool has_avx2(const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c; }
bool has_avx512_vnni(const CpuFeatures& f) {
  return has_avx2(f) && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
}

// The VNNI group dot of a weight type in the variant namespace NS, if it has one.
#define TANDEM_VNNI_TABLE(ns)                         \
  GroupDotFn ns##_group_dot(DType weight) {           \
    switch (weight) {                                 \
      case DType::Q4_K: return ns::dot_q4_k_x8;       \
      case DType::Q5_K: return ns::dot_q5_k_x8;       \
      case DType::Q6_K: return ns::dot_q6_k_x8;       \
      case DType::Q4_0: return ns::dot_q4_0_x8;       \
      case DType::IQ4_NL: return ns::dot_iq4_nl_x8;   \
      case DType::Q5_0: return ns::dot_q5_0_x8;       \
      case DType::Q8_0: return ns::dot_q8_0_x8;       \
      case DType::IQ4_XS: return ns::dot_iq4_xs_x8;   \
      default: return nullptr;                        \
    }                                                 \
  }
TANDEM_VNNI_TABLE(avx_vnni)
TANDEM_VNNI_TABLE(avx512_vnni)
#undef TANDEM_VNNI_TABLE

// The 16-row pass of a weight type (avx512_vnni only), if it has one.
GroupDotFn avx512_vnni_group_dot_x16(DType weight) {
  switch (weight) {
    case DType::Q4_0: return avx512_vnni::dot_q4_0_x16;
    case DType::IQ4_NL: return avx512_vnni::dot_iq4_nl_x16;
    case DType::Q5_0: return avx512_vnni::dot_q5_0_x16;
    case DType::Q8_0: return avx512_vnni::dot_q8_0_x16;
    case DType::Q4_K: return avx512_vnni::dot_q4_k_x16;
    case DType::Q5_K: return avx512_vnni::dot_q5_k_x16;
    case DType::Q6_K: return avx512_vnni::dot_q6_k_x16;
    case DType::IQ4_XS: return avx512_vnni::dot_iq4_xs_x16;
    default: return nullptr;
  }
}

}  // namespace

Isa best_isa() {
  const CpuFeatures& f = cpu_features();
  if (has_avx512_vnni(f)) return Isa::avx512_vnni;
  if (has_avx2(f) && f.avx_vnni) return Isa::avx_vnni;
  return has_avx2(f) ? Isa::avx2 : Isa::scalar;
}

bool cpu_runs(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return has_avx2(f);
    case Isa::avx_vnni: return has_avx2(f) && f.avx_vnni;
    case Isa::avx512_vnni: return has_avx512_vnni(f);
  }
  return false;
}

QuantDotKernel quant_dot_kernel(DType weight, Isa isa) {
  if (isa == Isa::scalar) return quant_dot_kernel_scalar(weight);
  QuantDotKernel k = quant_dot_kernel_avx2(weight);
  if (!k.dot_x8) return k;
  // A type without a VNNI group dot keeps the AVX2 one.
  GroupDotFn vnni = nullptr;
  if (isa == Isa::avx_vnni) vnni = avx_vnni_group_dot(weight);
  if (isa == Isa::avx512_vnni) vnni = avx512_vnni_group_dot(weight);
  if (vnni) k.dot_x8 = vnni;
  if (isa == Isa::avx512_vnni) k.dot_x16 = avx512_vnni_group_dot_x16(weight);
  return k;
}

QuantDotKernel quant_dot_kernel(DType weight) {
  static const Isa isa = best_isa();
  return quant_dot_kernel(weight, isa);
}

size_t activation_row_bytes(const QuantDotKernel& kernel, int64_t n) {
  const DTypeInfo& info = dtype_info(kernel.activation);
  const size_t blocks = static_cast<size_t>(n / info.block_elems);
  // Q8_0: the blocks' code sums and scales after them (q8_0_sums_offset).
  return blocks * info.block_bytes + (kernel.activation == DType::Q8_0 ? q8_0_tail_bytes(n) : 0);
}

}  // namespace tandem::cpu
