// CPU feature detection agrees with what the Linux kernel reports in /proc/cpuinfo.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "core/cpu_features.h"
#include "support/test_support.h"

namespace tandem {
namespace {

std::set<std::string> kernel_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      std::set<std::string> flags;
      for (std::string w; words >> w;) flags.insert(w);
      return flags;
    }
  }
  return {};
}

TEST(CpuFeatures, AgreesWithProcCpuinfo) {
  const std::set<std::string> flags = kernel_flags();
  if (flags.empty()) GTEST_SKIP() << "SKIPPED: no /proc/cpuinfo flags line";
  const CpuFeatures f = detect_cpu_features();
  EXPECT_EQ(f.sse42, flags.count("sse4_2") == 1);
  EXPECT_EQ(f.avx2, flags.count("avx2") == 1);
  EXPECT_EQ(f.fma, flags.count("fma") == 1);
  EXPECT_EQ(f.f16c, flags.count("f16c") == 1);
  EXPECT_EQ(f.avx512f, flags.count("avx512f") == 1);
  EXPECT_EQ(f.avx512bw, flags.count("avx512bw") == 1);
  EXPECT_EQ(f.avx512vl, flags.count("avx512vl") == 1);
  EXPECT_EQ(f.avx512vnni, flags.count("avx512_vnni") == 1);
  EXPECT_EQ(f.avx512bf16, flags.count("avx512_bf16") == 1);
  EXPECT_EQ(f.avx_vnni, flags.count("avx_vnni") == 1);
}

// Sizes of the data/unified caches of one level over every CPU, as the Linux kernel lists them
// (a hybrid CPU's core types differ; the detecting thread may run on either).
std::set<int64_t> sysfs_cache_sizes(int level) {
  std::set<int64_t> sizes;
  for (int cpu = 0; cpu < 4096; ++cpu) {
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cache/";
    if (!std::ifstream(base + "index0/level")) {
      if (cpu > 0) break;
      continue;
    }
    for (int index = 0; index < 8; ++index) {
      std::ifstream level_in(base + "index" + std::to_string(index) + "/level");
      int l = 0;
      if (!(level_in >> l)) break;
      std::string type, size;
      std::ifstream(base + "index" + std::to_string(index) + "/type") >> type;
      std::ifstream(base + "index" + std::to_string(index) + "/size") >> size;
      if (l != level || type == "Instruction" || size.empty()) continue;
      int64_t bytes = std::stoll(size);
      if (size.back() == 'K') bytes <<= 10;
      if (size.back() == 'M') bytes <<= 20;
      sizes.insert(bytes);
    }
  }
  return sizes;
}

TEST(CpuCaches, AgreeWithSysfs) {
  const std::set<int64_t> l1 = sysfs_cache_sizes(1), l2 = sysfs_cache_sizes(2);
  if (l1.empty() || l2.empty()) GTEST_SKIP() << "SKIPPED: no cache sizes under /sys/devices/system/cpu";
  const CpuCaches c = detect_cpu_caches();
  EXPECT_EQ(l1.count(c.l1d), 1u) << "cpuid says L1d " << c.l1d << " bytes, sysfs " << *l1.begin();
  EXPECT_EQ(l2.count(c.l2), 1u) << "cpuid says L2 " << c.l2 << " bytes, sysfs " << *l2.begin();
  EXPECT_EQ(cpu_caches().l2, c.l2);
}

TEST(CpuFeatures, ImpliedFeaturesAreConsistent) {
  const CpuFeatures f = detect_cpu_features();
  if (f.avx2) {
    EXPECT_TRUE(f.avx);
  }
  if (f.avx512bw || f.avx512vl || f.avx512vnni) {
    EXPECT_TRUE(f.avx512f);
  }
  EXPECT_FALSE(f.describe().empty());
}

TEST(CpuFeatures, CapsRemoveWhatTheyExclude) {
  CpuFeatures all;
  all.sse42 = all.avx = all.avx2 = all.fma = all.f16c = true;
  all.avx512f = all.avx512bw = all.avx512vl = all.avx512vnni = all.avx512bf16 = all.avx_vnni = true;
  EXPECT_EQ(cap_cpu_features(all, "").describe(), all.describe());
  EXPECT_EQ(cap_cpu_features(all, "avx512").describe(), all.describe());
  const CpuFeatures vnni = cap_cpu_features(all, "avx-vnni");
  EXPECT_TRUE(vnni.avx_vnni && vnni.avx2);
  EXPECT_FALSE(vnni.avx512f || vnni.avx512bw || vnni.avx512vl || vnni.avx512vnni || vnni.avx512bf16);
  const CpuFeatures avx2 = cap_cpu_features(all, "avx2");
  EXPECT_TRUE(avx2.avx2 && avx2.fma && avx2.f16c);
  EXPECT_FALSE(avx2.avx_vnni || avx2.avx512f);
  const CpuFeatures scalar = cap_cpu_features(all, "scalar");
  EXPECT_FALSE(scalar.avx || scalar.avx2 || scalar.fma || scalar.f16c || scalar.avx_vnni || scalar.avx512f);
  EXPECT_TRUE(scalar.sse42);
}

// TANDEM_REQUIRE_ISA (tools/test.sh sets it from `tandem devices`) names only features tandem
// knows -- a misspelt one would require nothing -- and the feature set the kernels pick from
// has each of them: TANDEM_CPU_MAX or a detection bug would otherwise skip their tests quietly.
TEST(CpuFeatures, RequiredIsasAreKnownAndPresent) {
  const std::vector<std::string> required = testing::required_isas(), known = testing::known_isas(),
                                 present = testing::isa_names(cpu_features().describe());
  const auto has = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  for (const std::string& name : required) {
    EXPECT_TRUE(has(known, name)) << "TANDEM_REQUIRE_ISA: '" << name << "' is no feature name `tandem devices` prints";
    EXPECT_TRUE(has(present, name)) << "TANDEM_REQUIRE_ISA lists " << name
                                    << " but the kernels see only: " << cpu_features().describe();
  }
  std::printf("TANDEM_REQUIRE_ISA: %zu features required\n", required.size());
}

TEST(CpuFeatures, UnknownCapIsAnErrorNamingIt) {
  try {
    cap_cpu_features(CpuFeatures{}, "avx512vnni");
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("TANDEM_CPU_MAX='avx512vnni'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem
