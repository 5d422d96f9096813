// Row-interleaved Q4_K (see interleaved.h): layout, repack, unpack and the portable dot.
//
// One group covers 8 rows; per 256-element super-block b it holds 1152 bytes (8 x 144, the
// rows' own size), the super-blocks of the group one after another:
//   d[8]        f16 scale of each row                                       16 bytes
//   dmin[8]     f16 min scale of each row                                   16 bytes
//   sc_low[32]  low 4 bits of the 6-bit sub-block scales                    32 bytes
//   mn_low[32]  low 4 bits of the 6-bit sub-block mins                      32 bytes
//   high[32]    top 2 bits of both                                          32 bytes
//   qs[4][8][32] nibbles: vector (p, i), byte 4r+t = byte 32p+4i+t of row r's qs, i.e.
//               element 64p+4i+t (sub-block 2p) of row r in its low nibble and element
//               64p+32+4i+t (sub-block 2p+1) in its high nibble               1024 bytes
// Sub-block j's scale of row r sits at byte slot(r, j % 4) = 16*(r/4) + 4*(j%4) + r%4 of
// sc_low (low nibble for j < 4, high nibble for j >= 4), its min likewise in mn_low, and
// their top bits in high[slot]: bits 0-1 scale j<4, 2-3 scale j>=4, 4-5 min j<4, 6-7 min
// j>=4. So three 32-byte loads and a few masks/shifts give four vectors of 6-bit values
// (scales j<4, scales j>=4, mins j<4, mins j>=4) whose 128-bit lanes hold rows 0-3 and
// 4-7 with the same in-lane offsets: one in-lane byte shuffle then spreads sub-block j's
// value into each row's 32-bit lane. One 32-byte load of qs and a mask (or a shift and a
// mask) gives 4 consecutive elements of all 8 rows, row r in bytes 4r..4r+3.
#include <cstring>

#include "backend/cpu/interleaved.h"
#include "backend/cpu/interleaved_scalar.h"
#include "core/half.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockQ4_K;
using quant::BlockQ8_K;
using quant::kQK;

namespace {

using namespace q4_k_x8;
constexpr size_t kGroupBlockBytes = kBytes;
static_assert(kBytes == 8 * sizeof(BlockQ4_K));
static_assert(kQs + 8 * sizeof(BlockQ4_K::qs) == kGroupBlockBytes);

// Packs 6-bit scales/mins back into a Q4_K block's 12 bytes (the inverse of
// unpack_scale_min_k4, bit for bit: it touches every bit of the 12 bytes).
void pack_scales(const int scale[8], const int min[8], uint8_t* packed) {
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>((scale[j] & 0x3F) | (scale[j + 4] >> 4) << 6);
    packed[j + 4] = static_cast<uint8_t>((min[j] & 0x3F) | (min[j + 4] >> 4) << 6);
    packed[j + 8] = static_cast<uint8_t>((scale[j + 4] & 0x0F) | (min[j + 4] & 0x0F) << 4);
  }
}

}  // namespace

void repack_q4_k_x8(const uint8_t* rows, size_t row_bytes, int64_t n, uint8_t* group) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint8_t* gb = group + b * kGroupBlockBytes;
    std::memset(gb + kScLow, 0, kQs - kScLow);
    for (int r = 0; r < 8; ++r) {
      BlockQ4_K blk;
      std::memcpy(&blk, rows + r * row_bytes + b * sizeof(BlockQ4_K), sizeof(blk));
      std::memcpy(gb + 2 * r, &blk.d, 2);
      std::memcpy(gb + kDmin + 2 * r, &blk.dmin, 2);
      for (int j = 0; j < 8; ++j) {
        int scale, min;
        quant::unpack_scale_min_k4(blk.scales, j, scale, min);
        const size_t s = slot(r, j);
        const int nib = 4 * (j / 4), top = 2 * (j / 4);
        gb[kScLow + s] |= static_cast<uint8_t>((scale & 0x0F) << nib);
        gb[kMnLow + s] |= static_cast<uint8_t>((min & 0x0F) << nib);
        gb[kHigh + s] |= static_cast<uint8_t>((scale >> 4) << top | (min >> 4) << (4 + top));
      }
      for (int q = 0; q < 128; q += 4) std::memcpy(gb + qs_index(r, q), blk.qs + q, 4);  // 4 bytes stay together
    }
  }
}

void unpack_q4_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* gb = group + b * kGroupBlockBytes;
    for (int r = 0; r < 8; ++r) {
      BlockQ4_K blk;
      std::memcpy(&blk.d, gb + 2 * r, 2);
      std::memcpy(&blk.dmin, gb + kDmin + 2 * r, 2);
      int scale[8], min[8];
      for (int j = 0; j < 8; ++j) group_scale_min(gb, r, j, scale[j], min[j]);
      pack_scales(scale, min, blk.scales);
      for (int q = 0; q < 128; q += 4) std::memcpy(blk.qs + q, gb + qs_index(r, q), 4);  // 4 bytes stay together
      std::memcpy(rows + r * row_bytes + b * sizeof(BlockQ4_K), &blk, sizeof(blk));
    }
  }
}

void dot_q4_k_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols,
                        float* out, int64_t out_stride) {
  dot_k4_x8_scalar<kGroupBlockBytes>(n, group, a, a_stride, n_cols, out, out_stride,
                                     [](const uint8_t* gb, int r, int j, int l) {
                                       return (gb[qs_index(r, 32 * (j / 2) + l)] >> (4 * (j % 2))) & 0x0F;
                                     });
}

}  // namespace tandem::cpu
