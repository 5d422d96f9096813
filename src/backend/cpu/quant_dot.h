// Dot products of quantized weight rows with quantized activations: the inner loop of
// every matmul on the CPU. As in ggml, each weight type pairs with an 8-bit activation
// type (Q8_0, Q8_1 or Q8_K), activations are quantized once per matmul, and the dot is
// done in integers block by block, so weights are never decoded to floats.
//
// Every kernel exists as a portable scalar version (the reference the SIMD ones are
// tested against) and as AVX2 versions; the row-interleaved group dots also have VNNI
// versions (vnni.h). The widest path the CPU supports is picked once at start-up
// (core/cpu_features.h, capped by TANDEM_CPU_MAX).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/interleaved.h"
#include "core/dtype.h"
#include "quant/blocks.h"

namespace tandem::cpu {

// Ordered: each path needs what the one before it needs. The VNNI paths are the AVX2
// kernels with vpdpbusd group dots: avx_vnni (VEX form, Intel Alder Lake and later
// desktops) and avx512_vnni (EVEX form with AVX-512 F/BW/VL, AMD Zen 4/5, Intel Xeons).
enum class Isa { scalar, avx2, avx_vnni, avx512_vnni };
const char* isa_name(Isa isa);
// The widest path this CPU runs (honours TANDEM_CPU_MAX).
Isa best_isa();
// Whether this CPU runs `isa` (it runs every path up to best_isa(), except that an
// AVX-512 CPU without AVX-VNNI does not run the VEX-encoded avx_vnni path).
bool cpu_runs(Isa isa);

// Quantizes n floats (a multiple of the type's block) to Q8_0, Q8_1 or Q8_K.
using QuantizeRowFn = void (*)(const float* x, void* y, int64_t n);
// Dot of one weight row (n elements) with `n_cols` activation rows: out[c * out_stride]
// = w . a_c, where a_c starts at a + c * a_stride bytes.
using VecDotFn = void (*)(int64_t n, const void* w, const void* a, size_t a_stride, int n_cols,
                          float* out, int64_t out_stride);

struct QuantDotKernel {
  DType weight = DType::F32;
  DType activation = DType::F32;  // Q8_0, Q8_1 or Q8_K
  QuantizeRowFn quantize = nullptr;
  VecDotFn dot = nullptr;
  // The row-interleaved layout (interleaved.h), for the types that have one: same
  // activation type and quantizer as the row kernel above.
  RepackFn repack_x8 = nullptr;
  UnpackFn unpack_x8 = nullptr;
  GroupDotFn dot_x8 = nullptr;
  // Where a path has one: dot_x8 over two consecutive groups at once (16 rows), which the
  // matmul runs from x16_min_cols activation columns per call when its weight tiles serve
  // more than one call (a prompt's), and from x16_min_cols_streamed when each weight byte
  // is read once (a call of up to 8 tokens); 0: never. Measured per CPU when a context
  // repacks weights of the type (group_width.h).
  GroupDotFn dot_x16 = nullptr;
  int x16_min_cols = 1;
  int x16_min_cols_streamed = 1;
  explicit operator bool() const { return dot != nullptr; }
  bool interleavable() const { return dot_x8 != nullptr; }
};

// The kernel for a weight type on the given path; an empty kernel when the type has none
// (F32, F16, BF16 and the types without integer kernels take the float path).
QuantDotKernel quant_dot_kernel(DType weight, Isa isa);
// Same, on the best path for this CPU.
QuantDotKernel quant_dot_kernel(DType weight);

// Bytes of one activation row of n elements in the kernel's activation type.
size_t activation_row_bytes(const QuantDotKernel& kernel, int64_t n);

// A Q8_0 activation row of n elements is its n / 32 blocks, then each block's sum of codes
// as int16 (at most 32 * 127 in magnitude), then the blocks' f16 scales again, side by
// side, each list padded with zeros to a multiple of 8 blocks (one 16-byte load each):
// written by every Q8_0 quantizer here and counted by activation_row_bytes. The
// block32 group dots take kOffset times the sum off their unsigned-code products for
// every block and column and scale by d; with both packed they read 8 blocks' worth in one
// load each, where each group call (every 8 or 16 rows) used to sum the block's codes
// again and convert its scale alone (60% of Q5_0's 16-row pass on Zen 5).
// Internal linkage: the VNNI files include this with AVX-512 flags (vnni.h).
namespace {
// Where the sums and the scales start in a row of n elements, and the tail's bytes.
inline size_t q8_0_tail_list_bytes(int64_t n) { return static_cast<size_t>((n / 32 + 7) / 8 * 8) * 2; }
inline size_t q8_0_sums_offset(int64_t n) { return static_cast<size_t>(n / 32) * sizeof(quant::BlockQ8_0); }
inline size_t q8_0_scales_offset(int64_t n) { return q8_0_sums_offset(n) + q8_0_tail_list_bytes(n); }
inline size_t q8_0_tail_bytes(int64_t n) { return 2 * q8_0_tail_list_bytes(n); }
// Block b's sum and scale (f16 bits) into the row's tail (rows start anywhere: memcpy).
inline void set_q8_0_block_tail(uint8_t* row, int64_t n, int64_t b, int sum, uint16_t d) {
  const auto s = static_cast<int16_t>(sum);
  std::memcpy(row + q8_0_sums_offset(n) + 2 * b, &s, sizeof(s));
  std::memcpy(row + q8_0_scales_offset(n) + 2 * b, &d, sizeof(d));
}
// Zeros in the padding of both lists (after the quantizer wrote blocks 0..n/32-1).
inline void clear_q8_0_tail_padding(uint8_t* row, int64_t n) {
  const size_t used = static_cast<size_t>(n / 32) * 2, pad = q8_0_tail_list_bytes(n) - used;
  std::memset(row + q8_0_sums_offset(n) + used, 0, pad);
  std::memset(row + q8_0_scales_offset(n) + used, 0, pad);
}
}  // namespace

// The per-ISA tables (one .cpp each; the AVX2 one is compiled with -mavx2 -mfma -mf16c).
// The VNNI paths take the AVX2 table and swap in their group dots (quant_dot.cpp).
QuantDotKernel quant_dot_kernel_scalar(DType weight);
QuantDotKernel quant_dot_kernel_avx2(DType weight);

// Shared by the tables: the activation type paired with a weight type (F32 when the
// weight type has no integer kernel), and ggml's reference Q8_K quantizer.
DType activation_type_for(DType weight);
void quantize_q8_k(const float* x, void* y, int64_t n);

}  // namespace tandem::cpu
