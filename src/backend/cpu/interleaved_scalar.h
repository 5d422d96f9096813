// Portable group dots shared by interleaved types of one family (interleaved.h): the
// 32-element-block types (Q4_0, IQ4_NL, Q5_0, Q8_0) and the Q4_K-layout types (Q4_K, Q5_K).
#pragma once

#include <cstdint>
#include <cstring>

#include "backend/cpu/interleaved.h"
#include "core/half.h"
#include "quant/blocks.h"

namespace tandem::cpu {

// Repack and unpack of the 32-element-block types whose group block starts with the 8 rows'
// f16 scales (each block's first two bytes): per block and row, put(gb, r, block) stores
// the row's codes into group block gb, get(gb, r, block) reads them back (the scale is
// copied here).
template <class Block, class Put>
void repack_block32_x8(const uint8_t* rows, size_t row_bytes, int64_t n, uint8_t* group, Put put) {
  constexpr size_t kGroupBlockBytes = 8 * sizeof(Block);
  for (int64_t b = 0; b < n / 32; ++b) {
    uint8_t* gb = group + b * kGroupBlockBytes;
    std::memset(gb, 0, kGroupBlockBytes);
    for (int r = 0; r < 8; ++r) {
      Block blk;
      std::memcpy(&blk, rows + r * row_bytes + b * sizeof(Block), sizeof(blk));
      std::memcpy(gb + 2 * r, &blk.d, 2);
      put(gb, r, blk);
    }
  }
}
template <class Block, class Get>
void unpack_block32_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes, Get get) {
  constexpr size_t kGroupBlockBytes = 8 * sizeof(Block);
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* gb = group + b * kGroupBlockBytes;
    for (int r = 0; r < 8; ++r) {
      Block blk{};
      std::memcpy(&blk.d, gb + 2 * r, 2);
      get(gb, r, blk);
      std::memcpy(rows + r * row_bytes + b * sizeof(Block), &blk, sizeof(blk));
    }
  }
}

// Q4_0/IQ4_NL/Q5_0/Q8_0 against Q8_0 activations: group blocks start with the 8 rows' f16 scales;
// value(gb, r, k) is the signed integer weight of element k of row r in group block gb.
template <size_t kGroupBlockBytes, typename Value>
void dot_block32_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols,
                           float* out, int64_t out_stride, Value value) {
  for (int c = 0; c < n_cols; ++c) {
    float sum[8] = {};
    for (int64_t b = 0; b < n / 32; ++b) {
      const uint8_t* gb = group + b * kGroupBlockBytes;
      quant::BlockQ8_0 act;
      std::memcpy(&act, a + c * a_stride + b * sizeof(act), sizeof(act));
      const float da = f16_to_f32(act.d);
      for (int r = 0; r < 8; ++r) {
        int isum = 0;
        for (int k = 0; k < 32; ++k) isum += value(gb, r, k) * act.qs[k];
        uint16_t dw;
        std::memcpy(&dw, gb + 2 * r, 2);
        sum[r] += f16_to_f32(dw) * da * static_cast<float>(isum);
      }
    }
    for (int r = 0; r < 8; ++r) out[c * out_stride + r] = sum[r];
  }
}

// Q4_K/Q5_K against Q8_K activations: group super-blocks in Q4_K's layout (d, dmin,
// scales and mins at q4_k_x8's offsets); code(gb, r, j, l) is the unsigned code of
// element l of sub-block j of row r.
template <size_t kGroupBlockBytes, typename Code>
void dot_k4_x8_scalar(int64_t n, const uint8_t* group, const uint8_t* a, size_t a_stride, int n_cols, float* out,
                      int64_t out_stride, Code code) {
  for (int c = 0; c < n_cols; ++c) {
    float sum[8] = {};
    for (int64_t b = 0; b < n / quant::kQK; ++b) {
      const uint8_t* gb = group + b * kGroupBlockBytes;
      const auto* act = reinterpret_cast<const quant::BlockQ8_K*>(a + c * a_stride) + b;
      float da;
      std::memcpy(&da, &act->d, sizeof(da));
      for (int r = 0; r < 8; ++r) {
        int scaled = 0, mins = 0;
        for (int j = 0; j < 8; ++j) {
          int scale, min;
          q4_k_x8::group_scale_min(gb, r, j, scale, min);
          int isum = 0;
          for (int l = 0; l < 32; ++l) isum += code(gb, r, j, l) * act->qs[32 * j + l];
          scaled += scale * isum;
          mins += min * (act->bsums[2 * j] + act->bsums[2 * j + 1]);
        }
        uint16_t d, dmin;
        std::memcpy(&d, gb + 2 * r, 2);
        std::memcpy(&dmin, gb + q4_k_x8::kDmin + 2 * r, 2);
        sum[r] += da * (f16_to_f32(d) * static_cast<float>(scaled) - f16_to_f32(dmin) * static_cast<float>(mins));
      }
    }
    for (int r = 0; r < 8; ++r) out[c * out_stride + r] = sum[r];
  }
}

}  // namespace tandem::cpu
