// Q6_K, 8 rows interleaved (interleaved.h): layout, repack, unpack and the portable group dot.
//
// A group is n/256 super-blocks of 1680 bytes (8 x 210, the size of the 8 file blocks they
// replace). Super-block i of the group holds the i-th block of each of the 8 rows:
//
//   bytes    0..15    d of rows 0..7 (f16 bits), so one cvtph gives a vector of 8 row scales
//   bytes   16..143   the 16 int8 group scales of each row, 16 bytes per pair p of groups
//                     (2p, 2p+1): [2p: rows 0-3][2p+1: rows 0-3][2p: rows 4-7][2p+1: rows 4-7].
//                     Sign-extended to int16, each 128-bit lane then holds its four rows, so one
//                     in-lane unpack of the pair with itself gives group 2p's (or 2p+1's) scale
//                     twice in each row's 32-bit lane (the madd operand).
//   bytes  144..1679  the 6-bit codes (q, 0..63), 96 bytes per 16-element group g: three
//                     32-byte vectors Y0, Y1, Y2. The codes of elements 16g + 4t + j (t: 0..3,
//                     j: 0..3) of row r sit at byte 4r + j: for t = 0, 1, 2 in the low 6 bits of
//                     Yt, and for t = 3 split over the spare top 2 bits of Y0 (bits 0-1 of q),
//                     Y1 (bits 2-3) and Y2 (bits 4-5).
//
// So a group's four code vectors (8 rows x 4 consecutive elements each, row r in bytes
// 4r..4r+3) cost three loads, three ands for t = 0..2 and eight more ops for t = 3; the
// file's split into 4 low and 2 high bits would need 17.
#include <cstring>

#include "backend/cpu/interleaved.h"
#include "core/half.h"
#include "quant/blocks.h"

namespace tandem::cpu {

using quant::BlockQ6_K;
using quant::BlockQ8_K;
using quant::kQK;

namespace {

constexpr int kRows = static_cast<int>(kInterleave);
constexpr size_t kSuperBlockBytes = q6_k_x8::kBytes;
constexpr size_t kScalesOffset = q6_k_x8::kScales;
constexpr size_t kCodesOffset = q6_k_x8::kCodes;
static_assert(kSuperBlockBytes == kRows * sizeof(BlockQ6_K) && kScalesOffset == 2 * kRows &&
              kCodesOffset == kScalesOffset + kRows * 16);
static_assert(kCodesOffset + 16 * 96 == kSuperBlockBytes);

// Byte of the group-scale area holding row r's scale of group g.
constexpr size_t scale_index(int r, int g) { return 16 * (g / 2) + 8 * (r / 4) + 4 * (g % 2) + r % 4; }

// All 256 codes of a file block in element order (the repack's inner loop: a whole model
// goes through it at load, so no per-element index arithmetic).
void codes_of_block(const BlockQ6_K& b, uint8_t q[kQK]) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    uint8_t* out = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      out[l] = static_cast<uint8_t>((ql[l] & 0x0F) | ((qh[l] & 3) << 4));
      out[l + 32] = static_cast<uint8_t>((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4));
      out[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      out[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
  }
}

// Codes of one super-block of the 8 rows, q[r][e].
void codes_of_super_block(const uint8_t* sb, uint8_t q[kRows][kQK]) {
  const uint8_t* codes = sb + kCodesOffset;
  for (int g = 0; g < 16; ++g) {
    const uint8_t* y = codes + 96 * g;
    for (int byte = 0; byte < 32; ++byte) {  // row byte / 4, element 16 g + 4 t + byte % 4
      const int y0 = y[byte], y1 = y[32 + byte], y2 = y[64 + byte];
      uint8_t* e = q[byte / 4] + 16 * g + byte % 4;
      e[0] = static_cast<uint8_t>(y0 & 0x3F);
      e[4] = static_cast<uint8_t>(y1 & 0x3F);
      e[8] = static_cast<uint8_t>(y2 & 0x3F);
      e[12] = static_cast<uint8_t>((y0 >> 6) | (y1 >> 6) << 2 | (y2 >> 6) << 4);
    }
  }
}

// A file block's ql/qh from its 256 codes in element order: the inverse of codes_of_block,
// in its loop shape (whole runs of l, no per-element index arithmetic).
void block_of_codes(const uint8_t q[kQK], BlockQ6_K& b) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* in = q + 128 * h;
    uint8_t* ql = b.ql + 64 * h;
    uint8_t* qh = b.qh + 32 * h;
    for (int l = 0; l < 32; ++l) {
      const int q0 = in[l], q1 = in[l + 32], q2 = in[l + 64], q3 = in[l + 96];
      ql[l] = static_cast<uint8_t>((q0 & 0x0F) | (q2 & 0x0F) << 4);
      ql[l + 32] = static_cast<uint8_t>((q1 & 0x0F) | (q3 & 0x0F) << 4);
      qh[l] = static_cast<uint8_t>((q0 >> 4) | (q1 >> 4) << 2 | (q2 >> 4) << 4 | (q3 >> 4) << 6);
    }
  }
}

}  // namespace

void repack_q6_k_x8(const uint8_t* rows, size_t row_bytes, int64_t n, uint8_t* group) {
  for (int64_t i = 0; i < n / kQK; ++i) {
    uint8_t* sb = group + i * kSuperBlockBytes;
    for (int r = 0; r < kRows; ++r) {
      BlockQ6_K b;
      std::memcpy(&b, rows + r * row_bytes + i * sizeof(BlockQ6_K), sizeof(b));
      std::memcpy(sb + 2 * r, &b.d, 2);
      for (int g = 0; g < 16; ++g) sb[kScalesOffset + scale_index(r, g)] = static_cast<uint8_t>(b.scales[g]);
      uint8_t q[kQK];
      codes_of_block(b, q);
      uint8_t* codes = sb + kCodesOffset;
      for (int g = 0; g < 16; ++g) {
        uint8_t* y = codes + 96 * g;
        const uint8_t* e = q + 16 * g;
        for (int j = 0; j < 4; ++j) {
          const int byte = 4 * r + j, last = e[12 + j];
          for (int t = 0; t < 3; ++t) y[32 * t + byte] = static_cast<uint8_t>(e[4 * t + j] | (((last >> (2 * t)) & 3) << 6));
        }
      }
    }
  }
}

void unpack_q6_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  uint8_t q[kRows][kQK];
  for (int64_t i = 0; i < n / kQK; ++i) {
    const uint8_t* sb = group + i * kSuperBlockBytes;
    codes_of_super_block(sb, q);
    for (int r = 0; r < kRows; ++r) {
      BlockQ6_K b{};
      std::memcpy(&b.d, sb + 2 * r, 2);
      for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<int8_t>(sb[kScalesOffset + scale_index(r, g)]);
      block_of_codes(q[r], b);
      std::memcpy(rows + r * row_bytes + i * sizeof(BlockQ6_K), &b, sizeof(b));
    }
  }
}

// Same integer arithmetic and float summation as the scalar row kernel (quant_dot.cpp), so
// the two agree to the last bit.
void dot_q6_k_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols,
                        float* out, int64_t out_stride) {
  double sum[kInterleave][kInterleave] = {};  // [column][row]
  uint8_t q[kRows][kQK];
  for (int64_t i = 0; i < n / kQK; ++i) {
    const uint8_t* sb = group + i * kSuperBlockBytes;
    codes_of_super_block(sb, q);
    for (int c = 0; c < n_cols; ++c) {
      BlockQ8_K ab;
      std::memcpy(&ab, a + c * a_stride + i * sizeof(BlockQ8_K), sizeof(ab));
      for (int r = 0; r < kRows; ++r) {
        uint16_t d;
        std::memcpy(&d, sb + 2 * r, 2);
        int64_t scaled = 0;
        for (int g = 0; g < 16; ++g) {
          int s = 0;
          for (int l = 0; l < 16; ++l) s += (q[r][16 * g + l] - 32) * ab.qs[16 * g + l];
          scaled += static_cast<int64_t>(static_cast<int8_t>(sb[kScalesOffset + scale_index(r, g)])) * s;
        }
        sum[c][r] += ab.d * (f16_to_f32(d) * static_cast<float>(scaled));
      }
    }
  }
  for (int c = 0; c < n_cols; ++c) {
    for (int r = 0; r < kRows; ++r) out[c * out_stride + r] = static_cast<float>(sum[c][r]);
  }
}

}  // namespace tandem::cpu
