// Every row-interleaved group dot a test can run on this CPU, by name.
#pragma once

#include <string>
#include <vector>

#include "backend/cpu/quant_dot.h"

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

}  // namespace tandem::testing
