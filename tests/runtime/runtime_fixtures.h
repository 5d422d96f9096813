// The committed fixture models (tests/fixtures/<arch>/), opened as engines for runtime tests.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "runtime/engine.h"

namespace tandem::runtime {

inline std::string fixture(const std::string& arch, const std::string& file = "model-q8_0.gguf") {
  return (std::filesystem::path(TANDEM_SOURCE_DIR) / "tests" / "fixtures" / arch / file).string();
}

inline std::unique_ptr<Engine> open_engine(const std::string& path, int64_t plan_ctx = 1024) {
  EngineOptions o;
  o.model_path = path;
  o.threads = 2;
  o.plan_ctx = plan_ctx;
  o.quiet = true;
  return std::make_unique<Engine>(o);
}

}  // namespace tandem::runtime
