// Shared by the row-interleaved group dot tests: every group dot a test can run on this
// CPU (by name), and the Q8_K-activation helpers of the 256-element types' tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/quant_dot.h"
#include "support/test_support.h"

namespace tandem::testing {

struct GroupDotPath {
  std::string name;
  cpu::GroupDotFn dot;
};

// The group dots of `type`: the portable one (unless `with_scalar` is false), every SIMD
// path this CPU runs (avx2, avx-vnni, avx512-vnni), and the VNNI kernels again with
// vpdpbusd emulated by SIMDe ("vnni-emulated", any AVX2 CPU), so the VNNI code is tested
// on machines without VNNI too.
std::vector<GroupDotPath> group_dot_paths(DType type, bool with_scalar = true);

// Group dot outputs of a column are kGroupOutStride floats apart (wider than 8, so stray
// writes show); Q8_K activation rows are padded by kActPadding bytes.
constexpr int64_t kGroupOutStride = 11;
constexpr size_t kActPadding = 40;
size_t q8_k_act_stride(int64_t n);
// n_cols Q8_K activation rows of n normal values, q8_k_act_stride(n) bytes apart.
std::vector<uint8_t> q8_k_activations(int64_t n, int n_cols, std::mt19937& rng);
// n_cols rows of n normal values quantized by the kernel's activation quantizer, `stride`
// bytes apart (padding bytes 0xAB).
std::vector<uint8_t> quantized_activations(const cpu::QuantDotKernel& k, int64_t n, int n_cols, size_t stride,
                                           std::mt19937& rng);
// Runs a group dot on those activations into a buffer pre-filled with -1.
std::vector<float> run_group_dot(cpu::GroupDotFn dot, int64_t n, const std::vector<uint8_t>& group,
                                 const std::vector<uint8_t>& act, int n_cols);
// got == expect within 1e-6 of each output's term magnitude (the float sums' rounding),
// and nothing written between a column's 8 outputs and the next column's.
void expect_group_close(const std::vector<float>& got, const std::vector<float>& expect, const std::vector<double>& mag,
                        int n_cols, const char* what);

}  // namespace tandem::testing
