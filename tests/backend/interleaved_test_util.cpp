#include "interleaved_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "quant/blocks.h"

namespace tandem::testing {

using namespace tandem::cpu;

namespace {

GroupDotFn emulated_vnni_group_dot(DType type) {
  switch (type) {
    case DType::Q4_K: return vnni_emulated::dot_q4_k_x8;
    case DType::Q5_K: return vnni_emulated::dot_q5_k_x8;
    case DType::Q6_K: return vnni_emulated::dot_q6_k_x8;
    case DType::Q4_0: return vnni_emulated::dot_q4_0_x8;
    case DType::IQ4_NL: return vnni_emulated::dot_iq4_nl_x8;
    case DType::Q5_0: return vnni_emulated::dot_q5_0_x8;
    case DType::Q8_0: return vnni_emulated::dot_q8_0_x8;
    case DType::IQ4_XS: return vnni_emulated::dot_iq4_xs_x8;
    default: return nullptr;
  }
}

}  // namespace

std::vector<GroupDotPath> group_dot_paths(DType type, bool with_scalar) {
  std::vector<GroupDotPath> paths;
  const auto add = [&](std::string name, GroupDotFn dot) {
    if (dot) paths.push_back({std::move(name), dot});
  };
  if (with_scalar) add("scalar", quant_dot_kernel(type, Isa::scalar).dot_x8);
  for (Isa isa : runnable_isas()) {
    if (isa != Isa::scalar) add(isa_name(isa), quant_dot_kernel(type, isa).dot_x8);
  }
  if (cpu_runs(Isa::avx2)) add("vnni-emulated", emulated_vnni_group_dot(type));
  return paths;
}

size_t q8_k_act_stride(int64_t n) { return static_cast<size_t>(n / 256) * sizeof(quant::BlockQ8_K) + kActPadding; }

std::vector<uint8_t> q8_k_activations(int64_t n, int n_cols, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint8_t> act(q8_k_act_stride(n) * static_cast<size_t>(n_cols), 0xAB);
  std::vector<float> x(static_cast<size_t>(n));
  for (int c = 0; c < n_cols; ++c) {
    for (auto& v : x) v = dist(rng);
    quantize_q8_k(x.data(), act.data() + c * q8_k_act_stride(n), n);
  }
  return act;
}

std::vector<uint8_t> quantized_activations(const QuantDotKernel& k, int64_t n, int n_cols, size_t stride,
                                           std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint8_t> act(stride * static_cast<size_t>(n_cols), 0xAB);
  std::vector<float> x(static_cast<size_t>(n));
  for (int c = 0; c < n_cols; ++c) {
    for (auto& v : x) v = dist(rng);
    k.quantize(x.data(), act.data() + c * stride, n);
  }
  return act;
}

std::vector<float> run_group_dot(GroupDotFn dot, int64_t n, const std::vector<uint8_t>& group,
                                 const std::vector<uint8_t>& act, int n_cols) {
  std::vector<float> out(static_cast<size_t>(n_cols * kGroupOutStride), -1.0f);
  dot(n, group.data(), act.data(), q8_k_act_stride(n), n_cols, out.data(), kGroupOutStride);
  return out;
}

void expect_group_close(const std::vector<float>& got, const std::vector<float>& expect, const std::vector<double>& mag,
                        int n_cols, const char* what) {
  for (int c = 0; c < n_cols; ++c) {
    for (int r = 0; r < 8; ++r) {
      const size_t i = static_cast<size_t>(c * kGroupOutStride + r);
      EXPECT_NEAR(got[i], expect[i], 1e-6 * mag[i] + 1e-30) << what << " cols=" << n_cols << " c=" << c << " r=" << r;
    }
    for (int64_t o = 8; o < kGroupOutStride; ++o) {
      EXPECT_EQ(got[c * kGroupOutStride + o], -1.0f) << what << ": wrote past row 8";
    }
  }
}

TEST(GroupDotPaths, NativeVnniVariants) {
  // The native VNNI kernels are the emulated ones' source compiled for the real
  // instruction; this says plainly when this CPU cannot run them.
  const std::vector<Isa> isas = runnable_isas();  // fails for a required path that does not run
  const auto runs = [&](Isa isa) { return std::find(isas.begin(), isas.end(), isa) != isas.end(); };
  TANDEM_SKIP_WITHOUT_ISA(runs(Isa::avx_vnni) || runs(Isa::avx512_vnni), "avx-vnni avx512vnni",
                          "neither AVX-VNNI nor AVX512-VNNI on this CPU; the VNNI group dots ran emulated (SIMDe) only");
  for (DType type : {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS, DType::Q5_0, DType::Q8_0}) {
    for (Isa isa : {Isa::avx_vnni, Isa::avx512_vnni}) {
      if (!runs(isa)) continue;
      EXPECT_NE(quant_dot_kernel(type, isa).dot_x8, nullptr) << dtype_name(type) << " " << isa_name(isa);
      EXPECT_NE(quant_dot_kernel(type, isa).dot_x8, quant_dot_kernel(type, Isa::avx2).dot_x8) << dtype_name(type);
    }
  }
}

}  // namespace tandem::testing
