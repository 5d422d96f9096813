// Shared helpers for tests: where the shared data and scratch space live.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "backend/cpu/quant_dot.h"

namespace tandem::testing {

// ../shared (TESTING.md). If it is absent the calling test skips loudly, unless
// TANDEM_REQUIRE_SHARED=1 (set by .ci/run), which turns that into a failure.
// Returns an empty path when the test must skip; use TANDEM_REQUIRE_SHARED_DATA below.
std::filesystem::path shared_dir();
bool shared_required();
// The small real model: env TANDEM_TEST_MODEL, else the path configured in CMake; nullptr
// when neither names an existing file.
const char* test_model();

// TANDEM_REQUIRE_ISA: the CPU features whose tests must run here, space- or comma-separated,
// named as `tandem devices` prints them ("_", "-" and "." are ignored, so /proc/cpuinfo's
// avx512_vnni names avx512vnni too). tools/test.sh sets it to what the runner's CPU reports,
// which turns a feature-gated skip into a failure: a path that should run and did not.
std::vector<std::string> required_isas();
// Feature names in `text` (space- or comma-separated), in that normal form.
std::vector<std::string> isa_names(std::string_view text);
// Whether TANDEM_REQUIRE_ISA lists any of the space-separated `features`.
bool isa_required(std::string_view features);
// The feature names tandem detects (CpuFeatures::describe() of a CPU with all of them).
std::vector<std::string> known_isas();
// The features a CPU path needs, as `tandem devices` names them ("" for the scalar path).
const char* isa_features(cpu::Isa isa);
// Every quant-dot path this CPU runs (scalar, avx2, avx-vnni, avx512-vnni), not just the best
// one; a path it does not run although TANDEM_REQUIRE_ISA lists its features is a failure.
std::vector<cpu::Isa> runnable_isas();

// The raw little-endian float32 file at `path` (reference logits).
std::vector<float> read_floats(const std::filesystem::path& path);

// A fresh, empty scratch folder for one test (under the build tree).
std::filesystem::path scratch_dir(const std::string& name);

// User + system CPU seconds used so far by every thread of this process except the
// calling one (getrusage RUSAGE_SELF minus RUSAGE_THREAD).
double other_threads_cpu_seconds();

}  // namespace tandem::testing

// Skips (or fails under TANDEM_REQUIRE_SHARED=1) when ../shared/data is missing.
#define TANDEM_REQUIRE_SHARED_DATA(dir_var)                                             \
  const std::filesystem::path dir_var = ::tandem::testing::shared_dir();                \
  if (dir_var.empty()) {                                                                \
    if (::tandem::testing::shared_required()) FAIL() << "shared data missing (TANDEM_SHARED)"; \
    GTEST_SKIP() << "SKIPPED LOUDLY: shared data not found; set TANDEM_SHARED";         \
  }

// Skips (or fails under TANDEM_REQUIRE_SHARED=1) when the real test model is missing.
#define TANDEM_REQUIRE_TEST_MODEL(path_var)                                             \
  const char* path_var = ::tandem::testing::test_model();                               \
  if (path_var == nullptr) {                                                            \
    if (::tandem::testing::shared_required()) FAIL() << "real test model missing (TANDEM_TEST_MODEL)"; \
    GTEST_SKIP() << "SKIPPED LOUDLY: real test model not found; run tools/fetch_model.sh"; \
  }

// Skips when `present` is false (a CPU without `features`), or fails when TANDEM_REQUIRE_ISA
// lists one of `features` (space-separated names as `tandem devices` prints them).
#define TANDEM_SKIP_WITHOUT_ISA(present, features, message)                                  \
  if (!(present)) {                                                                         \
    if (::tandem::testing::isa_required(features))                                          \
      FAIL() << "TANDEM_REQUIRE_ISA lists " << (features) << " but this test found " << message; \
    GTEST_SKIP() << "SKIPPED: " << message;                                                 \
  }
