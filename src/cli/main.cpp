// `tandem`: one binary, many subcommands. Errors from the library arrive as tandem::Error
// and end the process with a one-line message and exit code 1.
#include <cstdio>
#include <exception>
#include <string_view>
#include <utility>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/error.h"

namespace {

// llama.cpp's multi-letter short flags become their long forms (CLI11 takes one-letter
// short names only), so `-ctk q8_0`, `-ub 256` and `-ngl 99` work for every subcommand.
void expand_short_aliases(int argc, char** argv) {
  static const std::pair<std::string_view, const char*> aliases[] = {
      {"-ub", "--ubatch-size"}, {"-ctk", "--cache-type-k"}, {"-ctv", "--cache-type-v"},
      {"-ngl", "--n-gpu-layers"}, {"-ot", "--override-tensor"}, {"-cmoe", "--cpu-moe"},
      {"-ncmoe", "--n-cpu-moe"}, {"-np", "--parallel"}, {"-md", "--model-draft"}, {"-hf", "--hf-repo"}};
  for (int i = 1; i < argc; ++i) {
    for (const auto& [alias, name] : aliases) {
      if (alias == argv[i]) argv[i] = const_cast<char*>(name);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandem: fast local inference for GGUF models on GPU + CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tandem 0.1.0");
  tandem::cli::register_inspect(app);
  tandem::cli::register_devices(app);
  tandem::cli::register_run(app);
  tandem::cli::register_perplexity(app);
  tandem::cli::register_chat(app);
  tandem::cli::register_tokenize(app);
  tandem::cli::register_template(app);
  tandem::cli::register_synth(app);
  tandem::cli::register_bench(app);
  tandem::cli::register_fit(app);
  tandem::cli::register_serve(app);
  tandem::cli::register_pull(app);
  try {
    expand_short_aliases(argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const tandem::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
