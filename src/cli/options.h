// Command-line options shared by the commands that load a model: the KV cache types, the
// placement flags, -t, and a progress bar on stderr while the file's pages are read in
// (only when stderr is a terminal; scripts and logs stay clean). They fill a
// runtime::EngineOptions, from which every such command opens its runtime::Engine.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "grammar/grammar.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/placement.h"

namespace tandem::cli {

// The loading bar (nothing when stderr is not a terminal).
std::function<void(uint64_t, uint64_t)> load_progress_bar();

// -ctk/-ctv as llama.cpp spells them (main() rewrites the short forms to these long ones).
struct KvCacheOptions {
  std::string k = "f16", v = "f16";
  void add_to(CLI::App* cmd);
  model::KvCacheTypes types() const;
};

// --vram-budget, -ngl, --cpu-moe, --n-cpu-moe, -ot, --expert-streaming, --placement.
void add_placement_options(CLI::App* cmd, runtime::PlacementOptions& o);

// What run, chat, perplexity and serve share: model, threads, cache types, placement.
struct EngineFlags {
  std::string model;
  int threads = 0;
  KvCacheOptions kv;
  runtime::PlacementOptions placement;
  void add_to(CLI::App* cmd, bool with_placement = true);
  // Engine options planned for `plan_ctx` positions in all and micro-batches of `ubatch`.
  runtime::EngineOptions engine_options(int64_t plan_ctx, int64_t ubatch) const;
};

// --grammar, --grammar-file, --json-schema (run and chat): structured output.
struct GrammarFlags {
  std::string grammar, grammar_file, json_schema;
  void add_to(CLI::App* cmd);
  // The grammar asked for (null: none), compiled; `leading_space` as grammar::compile.
  // Bad text is a tandem::Error naming the flag and, for GBNF, line and column.
  std::shared_ptr<const grammar::Grammar> compile(bool leading_space) const;
};

}  // namespace tandem::cli
