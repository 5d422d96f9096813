#include "interleaved_paths.h"

#include <gtest/gtest.h>

namespace tandem::testing {

using namespace tandem::cpu;

namespace {

GroupDotFn emulated_vnni_group_dot(DType type) {
  switch (type) {
    case DType::Q4_K: return vnni_emulated::dot_q4_k_x8;
    case DType::Q5_K: return vnni_emulated::dot_q5_k_x8;
    case DType::Q6_K: return vnni_emulated::dot_q6_k_x8;
    case DType::Q5_0: return vnni_emulated::dot_q5_0_x8;
    case DType::Q8_0: return vnni_emulated::dot_q8_0_x8;
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
  for (Isa isa : {Isa::avx2, Isa::avx_vnni, Isa::avx512_vnni}) {
    if (cpu_runs(isa)) add(isa_name(isa), quant_dot_kernel(type, isa).dot_x8);
  }
  if (cpu_runs(Isa::avx2)) add("vnni-emulated", emulated_vnni_group_dot(type));
  return paths;
}

TEST(GroupDotPaths, NativeVnniVariants) {
  // The native VNNI kernels are the emulated ones' source compiled for the real
  // instruction; this says plainly when this CPU cannot run them.
  if (!cpu_runs(Isa::avx_vnni) && !cpu_runs(Isa::avx512_vnni)) {
    GTEST_SKIP() << "SKIPPED: this CPU has neither AVX-VNNI nor AVX512-VNNI; the VNNI group dots ran "
                    "emulated (SIMDe) only";
  }
  for (DType type : {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q5_0, DType::Q8_0}) {
    for (Isa isa : {Isa::avx_vnni, Isa::avx512_vnni}) {
      if (!cpu_runs(isa)) continue;
      EXPECT_NE(quant_dot_kernel(type, isa).dot_x8, nullptr) << dtype_name(type) << " " << isa_name(isa);
      EXPECT_NE(quant_dot_kernel(type, isa).dot_x8, quant_dot_kernel(type, Isa::avx2).dot_x8) << dtype_name(type);
    }
  }
}

}  // namespace tandem::testing
