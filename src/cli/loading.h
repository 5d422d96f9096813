// Shared by the commands that load a model: a progress bar on stderr while the file's pages
// are read in (only when stderr is a terminal; scripts and logs stay clean), and the KV
// cache type options.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <string>

#include "gguf/gguf_model_files.h"
#include "model/model.h"

namespace tandem::cli {

inline void load_with_progress(const gguf::ModelFiles& files) {
  if (!isatty(STDERR_FILENO)) {
    files.prefault({});
    return;
  }
  files.prefault([](uint64_t done, uint64_t total) {
    const int width = 40, filled = total ? static_cast<int>(width * done / total) : width;
    fmt::print(stderr, "\rloading [{:=<{}}{: <{}}] {:3d}% ({:.0f}/{:.0f} MiB)", "", filled, "", width - filled,
               total ? static_cast<int>(100 * done / total) : 100, done / 1048576.0, total / 1048576.0);
    if (done == total) fmt::print(stderr, "\n");
  });
}

// -ctk/-ctv as llama.cpp spells them (main() rewrites the short forms to these long ones).
struct KvCacheOptions {
  std::string k = "f16", v = "f16";
  void add_to(CLI::App* cmd) {
    cmd->add_option("--cache-type-k", k, "KV cache type for K (-ctk): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1")
        ->capture_default_str();
    cmd->add_option("--cache-type-v", v, "KV cache type for V (-ctv): as for K")->capture_default_str();
  }
  model::KvCacheTypes types() const {
    return {model::parse_kv_cache_type(k, "-ctk"), model::parse_kv_cache_type(v, "-ctv")};
  }
};

}  // namespace tandem::cli
