// Subcommands of the `tandem` CLI. Each registers its options on the app and runs later.
#pragma once

#include <CLI/CLI.hpp>

namespace tandem::cli {

void register_inspect(CLI::App& app);
void register_devices(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_run(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_chat(CLI::App& app);
void register_template(CLI::App& app);
void register_synth(CLI::App& app);
void register_bench(CLI::App& app);
void register_fit(CLI::App& app);
void register_serve(CLI::App& app);
// pull, list and rm: the model cache (cmd_pull.cpp).
void register_pull(CLI::App& app);

}  // namespace tandem::cli
