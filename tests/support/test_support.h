// Shared helpers for tests: where the shared data and scratch space live.
#pragma once

#include <filesystem>
#include <string>

namespace tandem::testing {

// ../shared (TESTING.md). If it is absent the calling test skips loudly, unless
// TANDEM_REQUIRE_SHARED=1 (set by .ci/run), which turns that into a failure.
// Returns an empty path when the test must skip; use TANDEM_REQUIRE_SHARED_DATA below.
std::filesystem::path shared_dir();
bool shared_required();
// The small real model: env TANDEM_TEST_MODEL, else the path configured in CMake; nullptr
// when neither names an existing file.
const char* test_model();

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
