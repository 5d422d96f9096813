#include "core/cpu_features.h"

#include "core/error.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace tandem {
namespace {

#if defined(__x86_64__) || defined(__i386__)
uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  f.sse42 = ecx & (1u << 20);
  const bool osxsave = ecx & (1u << 27);
  const bool cpu_avx = ecx & (1u << 28);
  const bool cpu_fma = ecx & (1u << 12);
  const bool cpu_f16c = ecx & (1u << 29);
  // The OS must save the wide registers, or using them faults: check XCR0.
  const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  const bool os_ymm = (xcr0 & 0x6) == 0x6;
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;
  f.avx = cpu_avx && os_ymm;
  f.fma = f.avx && cpu_fma;
  f.f16c = f.avx && cpu_f16c;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    f.avx2 = f.avx && (ebx & (1u << 5));
    f.avx512f = os_zmm && (ebx & (1u << 16));
    f.avx512bw = f.avx512f && (ebx & (1u << 30));
    f.avx512vl = f.avx512f && (ebx & (1u << 31));
    f.avx512vnni = f.avx512f && (ecx & (1u << 11));
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    f.avx512bf16 = f.avx512f && (eax & (1u << 5));
    f.avx_vnni = f.avx2 && (eax & (1u << 4));
  }
#endif
  return f;
}

CpuCaches detect_cpu_caches() {
  CpuCaches caches;
#if defined(__x86_64__) || defined(__i386__)
  // Both leaves use one format; on AMD leaf 4 reports nothing (type 0), on Intel 0x8000001D.
  for (const unsigned leaf : {4u, 0x8000001Du}) {
    const unsigned max = __get_cpuid_max(leaf & 0x80000000u, nullptr);
    if (max < leaf) continue;
    for (unsigned sub = 0; sub < 16; ++sub) {
      unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
      __cpuid_count(leaf, sub, eax, ebx, ecx, edx);
      const unsigned type = eax & 0x1F;  // 1 data, 2 instruction, 3 unified, 0 no more
      if (type == 0) break;
      if (type == 2) continue;
      const int64_t bytes = int64_t{((ebx >> 22) & 0x3FF) + 1} * (((ebx >> 12) & 0x3FF) + 1) * ((ebx & 0xFFF) + 1) *
                            (int64_t{ecx} + 1);
      switch ((eax >> 5) & 7) {
        case 1: caches.l1d = bytes; break;
        case 2: caches.l2 = bytes; break;
        case 3: caches.l3 = bytes; break;
        default: break;
      }
    }
    if (caches.l2 > 0) break;
  }
#endif
  return caches;
}

const CpuCaches& cpu_caches() {
  static const CpuCaches caches = detect_cpu_caches();
  return caches;
}

CpuFeatures cap_cpu_features(CpuFeatures f, std::string_view limit) {
  if (limit.empty() || limit == "avx512") return f;
  if (limit != "scalar" && limit != "avx2" && limit != "avx-vnni") {
    fail("TANDEM_CPU_MAX='{}': expected scalar, avx2, avx-vnni or avx512", limit);
  }
  f.avx512f = f.avx512bw = f.avx512vl = f.avx512vnni = f.avx512bf16 = false;
  if (limit == "scalar" || limit == "avx2") f.avx_vnni = false;
  if (limit == "scalar") f.avx = f.avx2 = f.fma = f.f16c = false;
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    const char* cap = std::getenv("TANDEM_CPU_MAX");
    return cap_cpu_features(detect_cpu_features(), cap ? cap : "");
  }();
  return features;
}

std::string CpuFeatures::describe() const {
  std::string out;
  auto add = [&out](bool present, const char* name) {
    if (!present) return;
    if (!out.empty()) out += ' ';
    out += name;
  };
  add(sse42, "sse4.2");
  add(avx, "avx");
  add(avx2, "avx2");
  add(fma, "fma");
  add(f16c, "f16c");
  add(avx_vnni, "avx-vnni");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512vnni, "avx512vnni");
  add(avx512bf16, "avx512bf16");
  return out.empty() ? "none" : out;
}

}  // namespace tandem
