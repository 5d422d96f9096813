// `tandem perplexity -m MODEL -f TEXT [-c 512] [--chunks N]`: llama-perplexity's measure.
#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/loading.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "gguf/gguf_model_files.h"
#include "model/model.h"
#include "runtime/perplexity.h"
#include "text/tokenizer.h"

namespace tandem::cli {
namespace {

struct PerplexityOptions {
  std::string model, file;
  int n_ctx = 512;
  int chunks = -1;
  int threads = 0;
  int ubatch = 512;
  KvCacheOptions kv;
};

void run_perplexity(const PerplexityOptions& o) {
  std::ifstream in(o.file, std::ios::binary);
  if (!in) fail("cannot read text file '{}'", o.file);
  std::ostringstream text;
  text << in.rdbuf();
  const gguf::ModelFiles files = gguf::ModelFiles::open(o.model);
  load_with_progress(files);
  const text::Tokenizer tokenizer = text::Tokenizer::from_gguf(files.primary());
  const auto model = model::load_model(files);
  text::EncodeOptions enc;
  enc.add_special = true;  // as llama-perplexity: BOS when the vocabulary asks for it
  const std::vector<text::TokenId> tokens = tokenizer.encode(text.str(), enc);
  const text::Vocab& vocab = tokenizer.vocab();
  const int32_t bos = vocab.add_bos ? vocab.bos : -1;
  const int threads = o.threads > 0 ? o.threads : default_thread_count();
  cpu::OpContext ctx(threads, model->max_row());
  fmt::print(stderr, "perplexity: {} tokens, context {}, {} threads\n", tokens.size(), o.n_ctx, threads);
  const runtime::PerplexityResult r = runtime::perplexity(
      *model, ctx, tokens, o.n_ctx, bos, o.chunks, std::min(o.ubatch, o.n_ctx), o.kv.types(),
      [](int64_t chunk, double ppl) { fmt::print(stderr, "[{}]{:.4f} ", chunk + 1, ppl); });
  fmt::print(stderr, "\n");
  fmt::print("Final estimate: PPL = {:.4f} +/- {:.5f} ({} chunks, {} scored tokens)\n", r.ppl, r.ppl_error,
             r.n_chunks, r.n_scored);
}

}  // namespace

void register_perplexity(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of a text, measured as llama-perplexity does");
  auto o = std::make_shared<PerplexityOptions>();
  cmd->add_option("-m,--model", o->model, "GGUF model file")->required();
  cmd->add_option("-f,--file", o->file, "Text file")->required();
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Chunk length in tokens")->capture_default_str()->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "Most chunks to evaluate (-1: all)")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (0: the usable cores)")->capture_default_str();
  o->kv.add_to(cmd);
  cmd->add_option("--ubatch-size", o->ubatch, "Tokens per forward pass")->capture_default_str()->check(CLI::Range(1, 8192));
  cmd->callback([o] { run_perplexity(*o); });
}

}  // namespace tandem::cli
