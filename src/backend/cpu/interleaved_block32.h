// The portable group dot shared by the interleaved 32-element-block types (Q5_0, Q8_0):
// their group blocks start with the 8 rows' f16 scales and pair with Q8_0 activations.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "quant/blocks.h"

namespace tandem::cpu {

// value(gb, r, k): the signed integer weight of element k of row r in group block gb.
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

}  // namespace tandem::cpu
