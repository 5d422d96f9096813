// Row-interleaved Q4_0 and IQ4_NL (see interleaved.h): layout, repack, unpack and the
// portable dots. The two types store the same bytes per block (an f16 scale and 32 4-bit
// codes, element k in the low nibble of byte k for k < 16, in the high nibble of byte k-16
// otherwise) and differ only in what a code means: Q4_0's is code - 8, IQ4_NL's is
// kIQ4NLValues[code]. So they share one layout: Q5_0's without its fifth bits.
//
// One group covers 8 rows; per 32-element block b it holds 144 bytes (8 x 18, the rows'
// own size), the blocks of the group one after another:
//   d[8]      f16 scale of each row's block                              16 bytes
//   qs[4][32] vector v, byte 4r+j = element 4v+j of row r in its low
//             nibble, element 16+4v+j in its high nibble                128 bytes
// "Chunk" i (i = 0..7) = elements 4i..4i+3 of all 8 rows: 32 bytes, row r at 4r. One
// 32-byte load of qs and a mask (chunk v) or a shift and a mask (chunk v+4) gives a chunk's
// 32 codes.
#include <cstring>

#include "backend/cpu/interleaved.h"
#include "backend/cpu/interleaved_scalar.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockQ4_0;

namespace {

static_assert(sizeof(BlockQ4_0) == sizeof(quant::BlockIQ4_NL), "Q4_0 and IQ4_NL share the block bytes");
constexpr size_t kGroupBlockBytes = 8 * sizeof(BlockQ4_0);

// Byte of element k of row r inside a group block, and the nibble (0: low, 4: high).
constexpr size_t code_byte(int r, int k) { return 16 + (k / 4 % 4) * 32 + 4 * r + k % 4; }
constexpr int code_shift(int k) { return k < 16 ? 0 : 4; }

// Code (0..15) of element k of row r in group block gb.
int group_code(const uint8_t* gb, int r, int k) { return (gb[code_byte(r, k)] >> code_shift(k)) & 0x0F; }

}  // namespace

void repack_q4_0_x8(const uint8_t* rows, size_t row_bytes, int64_t n, uint8_t* group) {
  repack_block32_x8<BlockQ4_0>(rows, row_bytes, n, group, [](uint8_t* gb, int r, const BlockQ4_0& blk) {
    for (int k = 0; k < 32; ++k) {
      const int code = k < 16 ? blk.qs[k] & 0x0F : blk.qs[k - 16] >> 4;
      gb[code_byte(r, k)] |= static_cast<uint8_t>(code << code_shift(k));
    }
  });
}

void unpack_q4_0_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  unpack_block32_x8<BlockQ4_0>(group, n, rows, row_bytes, [](const uint8_t* gb, int r, BlockQ4_0& blk) {
    for (int k = 0; k < 16; ++k) {
      blk.qs[k] = static_cast<uint8_t>(group_code(gb, r, k) | group_code(gb, r, k + 16) << 4);
    }
  });
}

void dot_q4_0_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols,
                        float* out, int64_t out_stride) {
  dot_block32_x8_scalar<kGroupBlockBytes>(n, group, a, a_stride, n_cols, out, out_stride,
                                          [](const uint8_t* gb, int r, int k) { return group_code(gb, r, k) - 8; });
}

void dot_iq4_nl_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols,
                          float* out, int64_t out_stride) {
  dot_block32_x8_scalar<kGroupBlockBytes>(
      n, group, a, a_stride, n_cols, out, out_stride,
      [](const uint8_t* gb, int r, int k) { return static_cast<int>(quant::kIQ4NLValues[group_code(gb, r, k)]); });
}

}  // namespace tandem::cpu
