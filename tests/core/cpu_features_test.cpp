// CPU feature detection agrees with what the Linux kernel reports in /proc/cpuinfo.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "core/cpu_features.h"

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

}  // namespace
}  // namespace tandem
