// `tandem`: one binary, many subcommands. Errors from the library arrive as tandem::Error
// and end the process with a one-line message and exit code 1.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/error.h"

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
  try {
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
