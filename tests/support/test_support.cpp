#include "support/test_support.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <sstream>
#include <string>

#include "core/cpu_features.h"

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

namespace {

// "avx512_vnni", "AVX512-VNNI" and "avx512vnni" are one name, as are "sse4_2" and "sse4.2".
std::string normalize(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c != '_' && c != '-' && c != '.') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

std::vector<std::string> isa_names(std::string_view text) {
  std::string s(text);
  std::replace(s.begin(), s.end(), ',', ' ');
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(normalize(w));
  return out;
}

std::vector<std::string> required_isas() {
  const char* env = std::getenv("TANDEM_REQUIRE_ISA");
  return isa_names(env ? env : "");
}

bool isa_required(std::string_view features) {
  const std::vector<std::string> required = required_isas();
  for (const std::string& f : isa_names(features)) {
    if (std::find(required.begin(), required.end(), f) != required.end()) return true;
  }
  return false;
}

std::vector<std::string> known_isas() {
  CpuFeatures all;
  all.sse42 = all.avx = all.avx2 = all.fma = all.f16c = true;
  all.avx512f = all.avx512bw = all.avx512vl = all.avx512vnni = all.avx512bf16 = all.avx_vnni = true;
  return isa_names(all.describe());
}

const char* isa_features(cpu::Isa isa) {
  switch (isa) {
    case cpu::Isa::scalar: return "";
    case cpu::Isa::avx2: return "avx2 fma f16c";
    case cpu::Isa::avx_vnni: return "avx-vnni";
    case cpu::Isa::avx512_vnni: return "avx512f avx512bw avx512vl avx512vnni";
  }
  return "";
}

std::vector<cpu::Isa> runnable_isas() {
  std::vector<cpu::Isa> isas;
  for (cpu::Isa isa : {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx_vnni, cpu::Isa::avx512_vnni}) {
    if (cpu::cpu_runs(isa)) {
      isas.push_back(isa);
    } else if (isa_required(isa_features(isa))) {
      ADD_FAILURE() << "TANDEM_REQUIRE_ISA lists " << isa_features(isa) << " but the " << cpu::isa_name(isa)
                    << " path does not run on this CPU (detected: " << cpu_features().describe() << ")";
    }
  }
  return isas;
}

std::vector<float> read_floats(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  in.seekg(0, std::ios::end);
  std::vector<float> data(static_cast<size_t>(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
  return data;
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
