// Row-interleaved Q8_0 (see interleaved.h): layout, repack, unpack and the portable dot.
//
// One group covers 8 rows; per 32-element block it holds 272 bytes (8 x 34, the rows' own
// size), the blocks of the group one after another:
//   d[8]      f16 scale of each row's block                              16 bytes
//   qs[8][32] vector i, byte 4r+j = element 4i+j of row r                256 bytes
// so one 32-byte load gives "chunk" i: elements 4i..4i+3 of all 8 rows.
#include <cstring>

#include "backend/cpu/interleaved.h"
#include "backend/cpu/interleaved_scalar.h"
#include "core/half.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockQ8_0;

namespace {

constexpr size_t kGroupBlockBytes = 8 * sizeof(BlockQ8_0);

// Byte of element k of row r inside a group block's qs.
constexpr size_t code_index(int r, int k) { return 16 + (k / 4) * 32 + 4 * r + k % 4; }

}  // namespace

void repack_q8_0_x8(const uint8_t* rows, size_t row_bytes, int64_t n, uint8_t* group) {
  for (int64_t b = 0; b < n / 32; ++b) {
    uint8_t* gb = group + b * kGroupBlockBytes;
    for (int r = 0; r < 8; ++r) {
      const uint8_t* blk = rows + r * row_bytes + b * sizeof(BlockQ8_0);
      std::memcpy(gb + 2 * r, blk + offsetof(BlockQ8_0, d), 2);
      for (int k = 0; k < 32; ++k) gb[code_index(r, k)] = blk[offsetof(BlockQ8_0, qs) + k];
    }
  }
}

void unpack_q8_0_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* gb = group + b * kGroupBlockBytes;
    for (int r = 0; r < 8; ++r) {
      uint8_t* blk = rows + r * row_bytes + b * sizeof(BlockQ8_0);
      std::memcpy(blk + offsetof(BlockQ8_0, d), gb + 2 * r, 2);
      for (int k = 0; k < 32; k += 4) std::memcpy(blk + offsetof(BlockQ8_0, qs) + k, gb + code_index(r, k), 4);
    }
  }
}

void dot_q8_0_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols,
                        float* out, int64_t out_stride) {
  dot_block32_x8_scalar<kGroupBlockBytes>(
      n, group, a, a_stride, n_cols, out, out_stride,
      [](const uint8_t* gb, int r, int k) { return static_cast<int>(static_cast<int8_t>(gb[code_index(r, k)])); });
}

}  // namespace tandem::cpu
