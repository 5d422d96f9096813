// Shared by the commands that load a model: a progress bar on stderr while the file's pages
// are read in (only when stderr is a terminal; scripts and logs stay clean).
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include "gguf/gguf_model_files.h"

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

}  // namespace tandem::cli
