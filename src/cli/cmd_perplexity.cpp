// `tandem perplexity -m MODEL -f TEXT [-c 512] [--chunks N]`: llama-perplexity's measure.
#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/perplexity.h"

namespace tandem::cli {
namespace {

struct PerplexityOptions {
  EngineFlags engine;
  std::string file;
  int n_ctx = 512;
  int chunks = -1;
  int ubatch = 512;
};

void run_perplexity(const PerplexityOptions& o) {
  const std::string text = read_text_file(o.file, "-f (the text)");
  const int64_t ubatch = std::min(o.ubatch, o.n_ctx);
  runtime::Engine engine(o.engine.engine_options(o.n_ctx, ubatch));
  text::EncodeOptions enc;
  enc.add_special = true;  // as llama-perplexity: BOS when the vocabulary asks for it
  const std::vector<text::TokenId> tokens = engine.tokenize(text, enc);
  const text::Vocab& vocab = engine.tokenizer().vocab();
  const int32_t bos = vocab.add_bos ? vocab.bos : -1;
  fmt::print(stderr, "perplexity: {} tokens, context {}, {} threads\n", tokens.size(), o.n_ctx, engine.threads());
  const runtime::PerplexityResult r = runtime::perplexity(
      engine.model(), engine.backends(), tokens, o.n_ctx, bos, o.chunks, ubatch, engine.options().kv,
      [](int64_t chunk, double ppl) { fmt::print(stderr, "[{}]{:.4f} ", chunk + 1, ppl); });
  fmt::print(stderr, "\n");
  fmt::print("Final estimate: PPL = {:.4f} +/- {:.5f} ({} chunks, {} scored tokens)\n", r.ppl, r.ppl_error,
             r.n_chunks, r.n_scored);
}

}  // namespace

void register_perplexity(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of a text, measured as llama-perplexity does");
  auto o = std::make_shared<PerplexityOptions>();
  o->engine.add_to(cmd);
  cmd->add_option("-f,--file", o->file, "Text file")->required();
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Chunk length in tokens")->capture_default_str()->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "Most chunks to evaluate (-1: all)")->capture_default_str();
  cmd->add_option("--ubatch-size", o->ubatch, "Tokens per forward pass")->capture_default_str()->check(CLI::Range(1, 8192));
  cmd->callback([o] { run_perplexity(*o); });
}

}  // namespace tandem::cli
