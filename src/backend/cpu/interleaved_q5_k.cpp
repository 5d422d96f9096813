// Row-interleaved Q5_K (see interleaved.h): layout, repack, unpack and the portable dot.
//
// One group covers 8 rows; per 256-element super-block it holds 1408 bytes (8 x 176, the
// rows' own size), the super-blocks of the group one after another. The first 1152 bytes
// are exactly the interleaved Q4_K super-block of the rows' d, dmin, scales and qs (the
// low 4 bits of each code; layout and offsets in interleaved_q4_k.cpp), then:
//   qh[8][32]   fifth bits: vector i, byte 4r+t = byte 4i+t of row r's qh     256 bytes
// Element 32g + 4i + t of row r has its fifth bit at bit g of byte 4r+t of qh vector i, so
// qh vector i lines up byte for byte with code vector (p, i) of the Q4_K part for every p:
// sub-block 2p (low nibbles) takes bit 2p, sub-block 2p+1 (high nibbles) bit 2p+1. One
// load, one shift and one mask move either bit to bit 4 of all 8 rows x 4 elements, ready
// to OR onto the nibbles. The qh bytes themselves are the rows' bytes, 4 at a time.
#include <cstring>

#include "backend/cpu/interleaved.h"
#include "backend/cpu/interleaved_scalar.h"
#include "core/half.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ8_K;
using quant::kQK;

namespace {

using q4_k_x8::group_scale_min;
using q4_k_x8::kDmin;
using q4_k_x8::qs_index;
using q5_k_x8::qh_index;
constexpr size_t kGroupBlockBytes = q5_k_x8::kBytes;
static_assert(q5_k_x8::kBytes == 8 * sizeof(BlockQ5_K));
static_assert(q5_k_x8::kQh + 8 * sizeof(BlockQ5_K::qh) == kGroupBlockBytes);

// Row r's Q5_K block b as the Q4_K block of its low 4 bits (and back).
BlockQ4_K low_bits(const BlockQ5_K& b) {
  BlockQ4_K q;
  q.d = b.d;
  q.dmin = b.dmin;
  std::memcpy(q.scales, b.scales, sizeof(q.scales));
  std::memcpy(q.qs, b.qs, sizeof(q.qs));
  return q;
}

}  // namespace

void repack_q5_k_x8(const uint8_t* rows, size_t row_bytes, int64_t n, uint8_t* group) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint8_t* gb = group + b * kGroupBlockBytes;
    BlockQ4_K low[8];
    for (int r = 0; r < 8; ++r) {
      BlockQ5_K blk;
      std::memcpy(&blk, rows + r * row_bytes + b * sizeof(BlockQ5_K), sizeof(blk));
      low[r] = low_bits(blk);
      for (int l = 0; l < 32; l += 4) std::memcpy(gb + qh_index(r, l), blk.qh + l, 4);
    }
    repack_q4_k_x8(reinterpret_cast<const uint8_t*>(low), sizeof(BlockQ4_K), kQK, gb);
  }
}

void unpack_q5_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* gb = group + b * kGroupBlockBytes;
    BlockQ4_K low[8];
    unpack_q4_k_x8(gb, kQK, reinterpret_cast<uint8_t*>(low), sizeof(BlockQ4_K));
    for (int r = 0; r < 8; ++r) {
      BlockQ5_K blk;
      blk.d = low[r].d;
      blk.dmin = low[r].dmin;
      std::memcpy(blk.scales, low[r].scales, sizeof(blk.scales));
      std::memcpy(blk.qs, low[r].qs, sizeof(blk.qs));
      for (int l = 0; l < 32; ++l) blk.qh[l] = gb[qh_index(r, l)];
      std::memcpy(rows + r * row_bytes + b * sizeof(BlockQ5_K), &blk, sizeof(blk));
    }
  }
}

void dot_q5_k_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols,
                        float* out, int64_t out_stride) {
  dot_k4_x8_scalar<kGroupBlockBytes>(n, group, a, a_stride, n_cols, out, out_stride,
                                     [](const uint8_t* gb, int r, int j, int l) {
                                       const int low = (gb[qs_index(r, 32 * (j / 2) + l)] >> (4 * (j % 2))) & 0x0F;
                                       return low | ((gb[qh_index(r, l)] >> j) & 1) << 4;
                                     });
}

}  // namespace tandem::cpu
