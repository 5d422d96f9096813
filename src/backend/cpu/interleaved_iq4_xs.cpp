// Row-interleaved IQ4_XS (see interleaved.h): layout, repack, unpack and the portable dot.
//
// One group covers 8 rows; per 256-element super-block b it holds 1088 bytes (8 x 136, the
// rows' own size), the super-blocks of the group one after another:
//   d[8]        f16 scale of each row                                       16 bytes
//   sc_low[32]  low 4 bits of the 6-bit sub-block scales, in Q4_K's slots:
//               row r's sub-block j at byte 16*(r/4) + 4*(j%4) + r%4, low nibble for
//               j < 4, high nibble for j >= 4                              32 bytes
//   high[16]    top 2 bits of the scales: row r's sub-block j at byte 4*(j%4) + r%4, bits
//               4*(r/4) + 2*(j/4) (rows 0-3 in bits 0-3, rows 4-7 in bits 4-7)   16 bytes
//   qs[4][8][32] nibbles as Q4_K's: vector (p, i), byte 4r+t = byte 32p+4i+t of row r's
//               qs. In IQ4_XS that byte belongs to sub-block g = 2p + i/4: its low nibble
//               is element 32g + 4(i%4) + t, its high nibble element 32g + 16 + 4(i%4) + t 1024 bytes
// Scales are stored as the file's unsigned 6-bit values (the weight scale is value - 32).
// One 32-byte load of sc_low and one 16-byte load of high, broadcast to both 128-bit lanes
// and shifted by 4 in the upper lane, give (with Q4_K's masks) two vectors of 6-bit scales
// whose lanes hold rows 0-3 and 4-7 at the same in-lane offsets: one in-lane byte shuffle
// per sub-block spreads its scale into each row's 32-bit lane. One 32-byte load of qs, a
// mask (or shift and mask) and a byte shuffle through the 16-entry codebook give 4
// consecutive elements of one sub-block of all 8 rows, row r in bytes 4r..4r+3.
#include <cstring>

#include "backend/cpu/interleaved.h"
#include "core/half.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockIQ4_XS;
using quant::BlockQ8_K;
using quant::kIQ4NLValues;
using quant::kQK;

namespace {

using namespace iq4_xs_x8;
constexpr size_t kGroupBlockBytes = kBytes;
static_assert(kBytes == 8 * sizeof(BlockIQ4_XS));
static_assert(kQs + 8 * sizeof(BlockIQ4_XS::qs) == kGroupBlockBytes);

int block_scale(const BlockIQ4_XS& b, int j) {
  return ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0x0F) | ((b.scales_h >> (2 * j)) & 3) << 4;
}

}  // namespace

void repack_iq4_xs_x8(const uint8_t* rows, size_t row_bytes, int64_t n, uint8_t* group) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint8_t* gb = group + b * kGroupBlockBytes;
    std::memset(gb + kScLow, 0, kQs - kScLow);
    for (int r = 0; r < 8; ++r) {
      BlockIQ4_XS blk;
      std::memcpy(&blk, rows + r * row_bytes + b * sizeof(BlockIQ4_XS), sizeof(blk));
      std::memcpy(gb + 2 * r, &blk.d, 2);
      for (int j = 0; j < 8; ++j) {
        const int scale = block_scale(blk, j);
        gb[kScLow + slot(r, j)] |= static_cast<uint8_t>((scale & 0x0F) << (4 * (j / 4)));
        gb[kHigh + high_slot(r, j)] |= static_cast<uint8_t>((scale >> 4) << high_shift(r, j));
      }
      for (int q = 0; q < 128; q += 4) std::memcpy(gb + qs_index(r, q), blk.qs + q, 4);  // 4 bytes stay together
    }
  }
}

void unpack_iq4_xs_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* gb = group + b * kGroupBlockBytes;
    for (int r = 0; r < 8; ++r) {
      BlockIQ4_XS blk{};
      std::memcpy(&blk.d, gb + 2 * r, 2);
      uint16_t high = 0;
      for (int j = 0; j < 8; ++j) {
        const int scale = group_scale(gb, r, j);
        blk.scales_l[j / 2] |= static_cast<uint8_t>((scale & 0x0F) << (4 * (j % 2)));
        high |= static_cast<uint16_t>((scale >> 4) << (2 * j));
      }
      blk.scales_h = high;
      for (int q = 0; q < 128; ++q) blk.qs[q] = gb[qs_index(r, q)];
      std::memcpy(rows + r * row_bytes + b * sizeof(BlockIQ4_XS), &blk, sizeof(blk));
    }
  }
}

void dot_iq4_xs_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols,
                          float* out, int64_t out_stride) {
  for (int c = 0; c < n_cols; ++c) {
    float sum[8] = {};
    for (int64_t b = 0; b < n / kQK; ++b) {
      const uint8_t* gb = group + b * kGroupBlockBytes;
      const auto* act = reinterpret_cast<const BlockQ8_K*>(a + c * a_stride) + b;
      float da;
      std::memcpy(&da, &act->d, sizeof(da));
      for (int r = 0; r < 8; ++r) {
        int scaled = 0;
        for (int j = 0; j < 8; ++j) {
          int isum = 0;
          for (int l = 0; l < 16; ++l) {
            // Element l and l + 16 of sub-block j: byte 16*j + l of row r's qs.
            const uint8_t q = gb[qs_index(r, 16 * j + l)];
            isum += kIQ4NLValues[q & 0x0F] * act->qs[32 * j + l] + kIQ4NLValues[q >> 4] * act->qs[32 * j + 16 + l];
          }
          scaled += (group_scale(gb, r, j) - 32) * isum;
        }
        uint16_t d;
        std::memcpy(&d, gb + 2 * r, 2);
        sum[r] += da * f16_to_f32(d) * static_cast<float>(scaled);
      }
    }
    for (int r = 0; r < 8; ++r) out[c * out_stride + r] = sum[r];
  }
}

}  // namespace tandem::cpu
