// RoPE angles as llama.cpp computes them (ggml's rope cache), shared by the CPU and CUDA
// ops so both turn a pair by the same f32 angle: pair i of position p turns by
// theta_i, theta_0 = p, theta_{i+1} = theta_i * rope_theta_scale(...), one f32 step at a
// time, then cosf/sinf. Why f32 and not exact angles: backend/cpu/cpu_ops.cpp rope_neox.
#pragma once

#include <cmath>
#include <cstdint>

namespace tandem {

// base^(-2 / n_rot) in f32 (powf, as llama.cpp).
inline float rope_theta_scale(float freq_base, int64_t n_rot) {
  return std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
}

}  // namespace tandem
