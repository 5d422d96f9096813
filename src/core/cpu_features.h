// What the CPU we run on can do, read once at start-up (cpuid + xgetbv), so that kernels
// pick their widest safe path at run time and one binary runs on any x86-64 machine.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tandem {

struct CpuFeatures {
  bool sse42 = false;
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;
  bool avx_vnni = false;  // VEX-encoded VNNI (Alder Lake and later)

  // Space-separated names of the features present, e.g. "sse4.2 avx avx2 fma f16c".
  std::string describe() const;
};

// Per-core cache sizes in bytes (0 where the CPU does not say), from cpuid's deterministic
// cache leaves (Intel: 4, AMD: 0x8000001D). The CPU matmuls size their token tiles by L2.
struct CpuCaches {
  int64_t l1d = 0;
  int64_t l2 = 0;
  int64_t l3 = 0;  // the whole L3 the core sees, shared with others
};
const CpuCaches& cpu_caches();
CpuCaches detect_cpu_caches();

// Detected once; honours TANDEM_CPU_MAX=scalar|avx2|avx-vnni|avx512 to cap the path for testing.
const CpuFeatures& cpu_features();

// Reads the CPU directly (no cap applied); exposed for tests.
CpuFeatures detect_cpu_features();

// `f` without what the cap `limit` (TANDEM_CPU_MAX's value: "", scalar, avx2, avx-vnni or
// avx512) excludes; any other value is an error naming it.
CpuFeatures cap_cpu_features(CpuFeatures f, std::string_view limit);

}  // namespace tandem
