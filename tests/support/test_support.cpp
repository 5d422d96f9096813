#include "support/test_support.h"

#include <sys/resource.h>

#include <cstdlib>
#include <string>

namespace tandem::testing {

std::filesystem::path shared_dir() {
  const char* env = std::getenv("TANDEM_SHARED");
  std::filesystem::path dir = env && *env ? env : TANDEM_SHARED_DEFAULT;
  if (!std::filesystem::is_directory(dir / "data")) return {};
  return dir;
}

bool shared_required() {
  const char* env = std::getenv("TANDEM_REQUIRE_SHARED");
  return env && std::string(env) == "1";
}

const char* test_model() {
  static const std::string path = [] {
    const char* env = std::getenv("TANDEM_TEST_MODEL");
    std::string p = env && *env ? env : TANDEM_TEST_MODEL_DEFAULT;
    return !p.empty() && std::filesystem::is_regular_file(p) ? p : std::string();
  }();
  return path.empty() ? nullptr : path.c_str();
}

std::filesystem::path scratch_dir(const std::string& name) {
  std::filesystem::path dir = std::filesystem::path(TANDEM_BINARY_DIR) / "test-scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

double other_threads_cpu_seconds() {
  const auto seconds = [](int who) {
    rusage u{};
    getrusage(who, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  return seconds(RUSAGE_SELF) - seconds(RUSAGE_THREAD);
}

}  // namespace tandem::testing
