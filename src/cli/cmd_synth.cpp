// `tandem synth --preset NAME -o OUT.gguf [--layers N] [--type q4_k_m] [--seed S]
// [--vocab-from VOCAB.gguf]`: a random-weight GGUF with a real model's shapes, metadata and
// llama-quantize's type mix, for measuring speed without downloading the model.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <unistd.h>

#include "cli/commands.h"
#include "core/error.h"
#include "model/synth.h"

namespace tandem::cli {
namespace {

struct SynthArgs {
  std::string preset;
  std::string out;
  std::string type = "q4_k_m";
  int64_t layers = 0;
  bool layers_given = false;
  uint64_t seed = 1;
  std::string vocab_from;
  bool list = false;
  bool mtp = false;
};

void list_presets() {
  for (const model::synth::Preset& p : model::synth::presets()) {
    fmt::print("{:<20} {:<10} {}\n", p.name, p.arch, p.about);
  }
}

void run_synth(const SynthArgs& a) {
  if (a.list) return list_presets();
  if (a.preset.empty() || a.out.empty()) fail("synth: give --preset NAME and -o OUT.gguf (--list shows presets)");
  const model::synth::Preset& preset = model::synth::find_preset(a.preset);
  model::synth::Options o;
  o.preset = a.layers_given ? model::synth::with_layers(preset, a.layers) : preset;
  if (a.mtp) {
    if (preset.arch != "qwen35moe" && preset.arch != "qwen35") {
      fail("synth: --mtp: {} has no MTP block (qwen35 and qwen35moe presets have one)", preset.arch);
    }
    o.preset.n_nextn = 1;
  }
  o.type = std::string(model::synth::find_file_type(a.type).name);
  o.seed = a.seed;
  o.vocab_from = a.vocab_from;
  const bool tty = isatty(STDERR_FILENO);
  o.progress = [tty](uint64_t done, uint64_t total) {
    fmt::print(stderr, "{}synth: {:.2f} / {:.2f} GiB ({:3.0f}%){}", tty ? "\r" : "", done / 1073741824.0,
               total / 1073741824.0, total ? 100.0 * done / total : 100.0, tty && done < total ? "" : "\n");
  };
  fmt::print(stderr, "synth: {} ({}), {} of {} layers, {}, seed {}, vocabulary {}\n", preset.name, preset.arch,
             o.preset.n_layer, preset.n_layer, o.type, o.seed,
             a.vocab_from.empty() ? "synthetic" : "from " + a.vocab_from);
  const auto t0 = std::chrono::steady_clock::now();
  const model::synth::Summary s = model::synth::write(a.out, o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string types;
  for (const auto& [name, count] : s.types) types += fmt::format("{}{} {}", types.empty() ? "" : ", ", count, name);
  fmt::print(stderr, "synth: wrote {} ({} tensors: {}; {:.2f} GiB) in {:.1f} s ({:.0f} MiB/s)\n", a.out,
             s.n_tensors, types, s.file_bytes / 1073741824.0, secs, s.file_bytes / 1048576.0 / secs);
}

}  // namespace

void register_synth(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "synth",
      "Write a random-weight GGUF with a real model's architecture (tensor names, shapes,\n"
      "metadata, llama-quantize's type mix), to measure speed without the real weights.\n"
      "The weights are random but numerically sane; the text it generates is noise.");
  auto args = std::make_shared<SynthArgs>();
  cmd->add_option("--preset", args->preset, "Architecture preset (--list shows them)");
  cmd->add_option("-o,--output", args->out, "GGUF file to write");
  auto* layers = cmd->add_option("--layers", args->layers, "Keep only the first N layers (default: all)");
  cmd->add_option("--type", args->type,
                  "File type as llama-quantize names it: q4_k_m (default), q4_k_s, q5_k_m, q5_k_s,\n"
                  "q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, f16, bf16, f32");
  cmd->add_option("--seed", args->seed, "Random seed (the same seed gives the same file)");
  cmd->add_flag("--mtp", args->mtp, "Append the MTP (NextN) draft block (qwen35moe), as files converted with it have");
  cmd->add_option("--vocab-from", args->vocab_from,
                  "Copy every tokenizer.* key from this GGUF (the token list is padded with\n"
                  "[PAD<i>] tokens to the preset's vocabulary size); default: a synthetic\n"
                  "byte-level BPE vocabulary");
  cmd->add_flag("--list", args->list, "List the presets and exit");
  cmd->callback([args, layers] {
    args->layers_given = layers->count() > 0;
    run_synth(*args);
  });
}

}  // namespace tandem::cli
