// Row-interleaved weights: the CPU backend's own layout for quantized matrices.
//
// In a GGUF file each row's blocks are contiguous, so a SIMD dot product unpacks one row's
// block and then needs a horizontal sum per row and column. Interleaved, 8 consecutive rows
// form a group whose blocks are stored side by side: one 32-byte load of unpacked codes
// holds a few k-positions of all 8 rows, an activation chunk is broadcast against it, and
// the 8 rows' sums land in the 8 lanes of one vector — no horizontal sums, one scale
// multiply per 8 rows, and one unpack serves every column of a prompt tile.
//
// A group takes exactly the bytes of its 8 rows in the file type (8 * row_bytes), so a 3-D
// expert stack keeps its offsets (Tensor::matrix) and memory stays the file's size. The
// CPU backend repacks a weight the first time it runs it (backend/cpu/cpu_backend.cpp);
// the activation type and quantizer are those of the row kernel of the same weight type
// (quant_dot.h), so grouped matmuls can mix both layouts.
//
// Each weight type's layout lives in its own file, documented there:
//   interleaved_<type>.cpp       layout, repack, unpack, portable (scalar) group dot
//   interleaved_<type>_avx2.cpp  the AVX2 group dot (compiled with -mavx2 -mfma -mf16c)
//   interleaved_<type>_vnni.cpp  the VNNI group dot, compiled once per VNNI variant (vnni.h)
//                                (Q4_K and Q5_K share interleaved_k4_vnni.cpp; the
//                                32-element-block types, interleaved_block32_vnni.cpp)
// Q4_0 and IQ4_NL store the same block bytes and share one layout (interleaved_q4_0.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem::cpu {

// Rows per interleaved group. Matrices whose row count is not a multiple stay row-major.
constexpr int64_t kInterleave = 8;

// Repacks 8 rows of n elements (row r starts at rows + r * row_bytes, in the file type)
// into one group of 8 * row_bytes bytes at `group`.
using Repack = void(const uint8_t* rows, size_t row_bytes, int64_t n, uint8_t* group);
// The inverse: writes the 8 rows back in the file type (byte-identical to what was packed).
using Unpack = void(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);
// Dot of one group (8 rows of n elements) with n_cols (1..8) quantized activation rows,
// a_c at a + c * a_stride bytes: out[c * out_stride + r] = row_r . a_c for r < 8.
using GroupDot = void(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride);
using RepackFn = Repack*;
using UnpackFn = Unpack*;
using GroupDotFn = GroupDot*;

// A 16-row pass reads two consecutive groups (each `group_bytes` long) side by side, from
// their start to their end, so each of its two streams skips every other group. ahead(pos)
// is the offset, from the pair's start, of the byte the first stream will read `distance`
// bytes of reading after byte pos of its group: past its group's end that is in a later
// pair's first group (a prefetch aimed at plain +distance lands in groups the other stream
// reads). Set up once per pass (one divide); one compare per position.
struct PairStream {
  int64_t start;  // ahead(0)
  int64_t cross;  // the first position whose target lies one pair further on
  int64_t group_bytes;
  constexpr PairStream(int64_t group_bytes, int64_t distance)
      : start(2 * group_bytes * (distance / group_bytes) + distance % group_bytes),
        cross(group_bytes - distance % group_bytes),
        group_bytes(group_bytes) {}
  constexpr int64_t ahead(int64_t pos) const { return start + pos + (pos >= cross ? group_bytes : 0); }
};

// Byte offsets inside one group super-block (256 elements x 8 rows), shared by each type's
// portable and AVX2 files; the layouts are described in interleaved_q4_k.cpp / _q5_k.cpp /
// _q6_k.cpp / _iq4_xs.cpp.
namespace q4_k_x8 {
constexpr int kDmin = 16, kScLow = 32, kMnLow = 64, kHigh = 96, kQs = 128, kBytes = 8 * 144;

// Byte of row r's sub-block j (mod 4) in sc_low / mn_low / high.
constexpr size_t slot(int r, int j) { return 16 * (r / 4) + 4 * (j % 4) + r % 4; }

// Byte of row r's qs[q] (q = 0..127) in the group super-block.
constexpr size_t qs_index(int r, int q) { return kQs + 256 * (q / 32) + 32 * ((q % 32) / 4) + 4 * r + q % 4; }

// The 6-bit scale and min of row r's sub-block j from a group super-block.
inline void group_scale_min(const uint8_t* gb, int r, int j, int& scale, int& min) {
  const size_t s = slot(r, j);
  const int nib = 4 * (j / 4), top = 2 * (j / 4);
  scale = ((gb[kScLow + s] >> nib) & 0x0F) | ((gb[kHigh + s] >> top) & 3) << 4;
  min = ((gb[kMnLow + s] >> nib) & 0x0F) | ((gb[kHigh + s] >> (4 + top)) & 3) << 4;
}
}  // namespace q4_k_x8
// Q5_K: Q4_K's group super-block (same offsets) followed by the fifth bits (kQh).
namespace q5_k_x8 {
constexpr int kQh = q4_k_x8::kBytes, kBytes = 8 * 176;

// Byte of row r's qh[l] (l = 0..31) in the group super-block.
constexpr size_t qh_index(int r, int l) { return kQh + 32 * (l / 4) + 4 * r + l % 4; }
}  // namespace q5_k_x8
namespace q6_k_x8 {
constexpr int kScales = 16, kCodes = 144, kBytes = 8 * 210;
}
// IQ4_XS (layout: interleaved_iq4_xs.cpp): d, sc_low in Q4_K's slots, high, qs as Q4_K's.
namespace iq4_xs_x8 {
constexpr int kScLow = 16, kHigh = 48, kQs = 64, kBytes = 8 * 136;

// Byte of row r's sub-block j (mod 4) in sc_low (Q4_K's slot) and in high (one 128-bit lane).
constexpr size_t slot(int r, int j) { return q4_k_x8::slot(r, j); }
constexpr size_t high_slot(int r, int j) { return 4 * (j % 4) + r % 4; }
// Bit offset of row r's sub-block j's top 2 bits in its high byte.
constexpr int high_shift(int r, int j) { return 4 * (r / 4) + 2 * (j / 4); }

// Byte of row r's qs[q] (q = 0..127) in the group super-block (Q4_K's arrangement).
constexpr size_t qs_index(int r, int q) { return kQs + 256 * (q / 32) + 32 * ((q % 32) / 4) + 4 * r + q % 4; }

// The 6-bit (unsigned, 0..63) scale of row r's sub-block j from a group super-block.
inline int group_scale(const uint8_t* gb, int r, int j) {
  return ((gb[kScLow + slot(r, j)] >> (4 * (j / 4))) & 0x0F) | ((gb[kHigh + high_slot(r, j)] >> high_shift(r, j)) & 3) << 4;
}
}  // namespace iq4_xs_x8

// Per type (activation type in brackets: the row kernel's):
// Q4_K, Q5_K, Q6_K, IQ4_XS [Q8_K]
Repack repack_q4_k_x8, repack_q5_k_x8, repack_q6_k_x8, repack_iq4_xs_x8;
Unpack unpack_q4_k_x8, unpack_q5_k_x8, unpack_q6_k_x8, unpack_iq4_xs_x8;
GroupDot dot_q4_k_x8_scalar, dot_q5_k_x8_scalar, dot_q6_k_x8_scalar, dot_iq4_xs_x8_scalar;
GroupDot dot_q4_k_x8_avx2, dot_q5_k_x8_avx2, dot_q6_k_x8_avx2, dot_iq4_xs_x8_avx2;
// Q4_0, IQ4_NL (one layout: repack_q4_0_x8 / unpack_q4_0_x8), Q5_0, Q8_0 [Q8_0]
Repack repack_q4_0_x8, repack_q5_0_x8, repack_q8_0_x8;
Unpack unpack_q4_0_x8, unpack_q5_0_x8, unpack_q8_0_x8;
GroupDot dot_q4_0_x8_scalar, dot_iq4_nl_x8_scalar, dot_q5_0_x8_scalar, dot_q8_0_x8_scalar;
GroupDot dot_q4_0_x8_avx2, dot_iq4_nl_x8_avx2, dot_q5_0_x8_avx2, dot_q8_0_x8_avx2;

// The VNNI group dots (vnni.h): the same functions, one set per variant namespace —
// avx_vnni and avx512_vnni in the library, vnni_emulated in the tests only.
namespace avx_vnni {
GroupDot dot_q4_k_x8, dot_q5_k_x8, dot_q6_k_x8, dot_iq4_xs_x8, dot_q4_0_x8, dot_iq4_nl_x8, dot_q5_0_x8, dot_q8_0_x8;
}
namespace avx512_vnni {
GroupDot dot_q4_k_x8, dot_q5_k_x8, dot_q6_k_x8, dot_iq4_xs_x8, dot_q4_0_x8, dot_iq4_nl_x8, dot_q5_0_x8, dot_q8_0_x8;
// Two consecutive groups (16 rows; the second group's data follows the first's) in one
// pass on 512-bit vectors; out gets 16 floats per column.
GroupDot dot_q4_0_x16, dot_iq4_nl_x16, dot_q5_0_x16, dot_q8_0_x16, dot_q4_k_x16, dot_q5_k_x16, dot_q6_k_x16, dot_iq4_xs_x16;
}
namespace vnni_emulated {
GroupDot dot_q4_k_x8, dot_q5_k_x8, dot_q6_k_x8, dot_iq4_xs_x8, dot_q4_0_x8, dot_iq4_nl_x8, dot_q5_0_x8, dot_q8_0_x8;
// The K-quants' and IQ4_XS's 16-row passes with the 512-bit vectors emulated by pairs of
// 256-bit ones (vnni.h's Zmm16): the frames that avx512_vnni runs natively, on any AVX2 machine.
GroupDot dot_q4_k_x16, dot_q5_k_x16, dot_q6_k_x16, dot_iq4_xs_x16;
}

}  // namespace tandem::cpu
