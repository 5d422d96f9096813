// Tensor-core primitives shared by the f16 mma kernels (attention_mma.cu, matmul.cu's tile
// GEMM): mma.sync.m16n8k16 with f16 inputs and f32 accumulators (compute capability 8.0+),
// and the register packing its operands need.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 .f16/.f32; g = lane / 4, t = lane % 4):
//   A (16 x 16, row major) regs a0..a3 = (row g, cols 2t..2t+1), (row g+8, cols 2t..),
//       (row g, cols 8+2t..), (row g+8, cols 8+2t..), lower column in the low half;
//   B (16 x 8, column major) b0 = (rows 2t..2t+1, col g), b1 = (rows 8+2t.., col g);
//   C (16 x 8, f32) c0, c1 = (row g, cols 2t, 2t+1), c2, c3 = (row g+8, same cols).
// So a row-major [n][k] f16 tile in shared memory gives B fragments as 32-bit loads of its
// rows, and a row-major [m][k] tile A fragments the same way. Padding such rows by 8 halves
// (16 bytes) puts the 8 rows x 4 words one fragment load touches in 32 distinct banks
// whenever the row length is a multiple of 16 halves (the row stride is then an odd
// multiple of 4 words, mod 32).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace tandem::cuda {

__device__ __forceinline__ void mma_16x8x16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  __trap();  // callers never launch mma kernels below compute capability 8.0
#endif
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);  // .x (lo) is the low 16 bits
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ uint32_t word_at(const __half* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Four floats rounded to f16 and stored as 8 bytes (p 8-byte aligned).
__device__ __forceinline__ void store4(__half* p, float4 v) {
  const __half2 lo = __floats2half2_rn(v.x, v.y), hi = __floats2half2_rn(v.z, v.w);
  uint2 u;
  u.x = *reinterpret_cast<const uint32_t*>(&lo);
  u.y = *reinterpret_cast<const uint32_t*>(&hi);
  *reinterpret_cast<uint2*>(p) = u;
}

}  // namespace tandem::cuda
