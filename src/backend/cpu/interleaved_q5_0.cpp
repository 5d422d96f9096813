// Row-interleaved Q5_0 (see interleaved.h): layout, repack, unpack and the portable dot.
//
// One group covers 8 rows; per 32-element block b it holds 176 bytes (8 x 22, the rows'
// own size), the blocks of the group one after another:
//   d[8]      f16 scale of each row's block                              16 bytes
//   qs[4][32] low 4 bits: vector v, byte 4r+j = element 4v+j of row r in its low
//             nibble, element 16+4v+j in its high nibble                128 bytes
//   qh[32]    fifth bits: byte 4r+j holds, in bit i, the fifth bit of element 4i+j
//             of row r                                                   32 bytes
// "Chunk" i (i = 0..7) = elements 4i..4i+3 of all 8 rows: 32 bytes, row r at 4r. One
// 32-byte load of qs and a mask (or a shift) gives chunk v (or v+4)'s low bits, one shift
// of qh and a mask its fifth bits: a chunk's 32 codes cost about four instructions.
#include <cstring>

#include "backend/cpu/interleaved.h"
#include "backend/cpu/interleaved_scalar.h"
#include "core/half.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockQ5_0;

namespace {

constexpr size_t kGroupBlockBytes = 8 * sizeof(BlockQ5_0);

// Code (0..31) of element k of a Q5_0 block.
int code_of(const BlockQ5_0& b, int k) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  const int low = k < 16 ? b.qs[k] & 0x0F : b.qs[k - 16] >> 4;
  return low | static_cast<int>((qh >> k) & 1) << 4;
}

// Code of element k of row r in group block gb.
int group_code(const uint8_t* gb, int r, int k) {
  const uint8_t* qs = gb + 16;
  const uint8_t* qh = gb + 16 + 128;
  const int i = k / 4, j = k % 4;
  const uint8_t byte = qs[(i % 4) * 32 + 4 * r + j];
  const int low = i < 4 ? byte & 0x0F : byte >> 4;
  return low | ((qh[4 * r + j] >> i) & 1) << 4;
}

}  // namespace

void repack_q5_0_x8(const uint8_t* rows, size_t row_bytes, int64_t n, uint8_t* group) {
  repack_block32_x8<BlockQ5_0>(rows, row_bytes, n, group, [](uint8_t* gb, int r, const BlockQ5_0& blk) {
    for (int k = 0; k < 32; ++k) {
      const int code = code_of(blk, k), i = k / 4, j = k % 4;
      gb[16 + (i % 4) * 32 + 4 * r + j] |= static_cast<uint8_t>((code & 0x0F) << (i < 4 ? 0 : 4));
      gb[16 + 128 + 4 * r + j] |= static_cast<uint8_t>((code >> 4) << i);
    }
  });
}

void unpack_q5_0_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  unpack_block32_x8<BlockQ5_0>(group, n, rows, row_bytes, [](const uint8_t* gb, int r, BlockQ5_0& blk) {
    uint32_t qh = 0;
    for (int k = 0; k < 32; ++k) {
      const int code = group_code(gb, r, k);
      if (k < 16) {
        blk.qs[k] = static_cast<uint8_t>(blk.qs[k] | (code & 0x0F));
      } else {
        blk.qs[k - 16] = static_cast<uint8_t>(blk.qs[k - 16] | (code & 0x0F) << 4);
      }
      qh |= static_cast<uint32_t>(code >> 4) << k;
    }
    std::memcpy(blk.qh, &qh, 4);
  });
}

void dot_q5_0_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols,
                        float* out, int64_t out_stride) {
  dot_block32_x8_scalar<kGroupBlockBytes>(n, group, a, a_stride, n_cols, out, out_stride,
                                          [](const uint8_t* gb, int r, int k) { return group_code(gb, r, k) - 16; });
}

}  // namespace tandem::cpu
