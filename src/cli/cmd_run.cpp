// `tandem run -m MODEL -p PROMPT`: load, tokenize, generate, stream the text, report speed.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "cli/loading.h"
#include "cli/placement.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "gguf/gguf_model_files.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "text/detokenizer.h"
#include "text/generation_stop.h"
#include "text/tokenizer.h"

namespace tandem::cli {
namespace {

struct RunOptions {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  int n_predict = 128;
  int n_ctx = 0;  // 0: min(training context, 4096), at least prompt + n_predict
  int threads = 0;
  int ubatch = 64;
  int64_t seed = -1;  // -1: random
  bool ignore_eos = false;
  bool show_special = false;
  std::vector<std::string> stops;
  runtime::SamplerParams sampling;
  KvCacheOptions kv;
  PlacementOptions placement;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read prompt file '{}'", path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run_generate(const RunOptions& o) {
  if (o.prompt.empty() == o.prompt_file.empty()) fail("give exactly one of -p PROMPT or -f FILE");
  const std::string prompt = o.prompt_file.empty() ? o.prompt : read_file(o.prompt_file);
  if (o.n_predict < 0) fail("-n must be >= 0 (got {})", o.n_predict);

  const gguf::ModelFiles files = gguf::ModelFiles::open(o.model);
  load_with_progress(files);
  const text::Tokenizer tokenizer = text::Tokenizer::from_gguf(files.primary());
  const auto model = model::load_model(files);
  for (const std::string& name : model->unused_tensors()) {
    fmt::print(stderr, "note: tensor '{}' is not used by this architecture\n", name);
  }
  const model::HParams& hp = model->hparams();

  text::EncodeOptions enc;
  enc.add_special = true;
  enc.parse_special = true;  // a raw prompt may spell out control tokens, as in llama.cpp
  const std::vector<text::TokenId> tokens = tokenizer.encode(prompt, enc);
  if (tokens.empty()) fail("the prompt is empty after tokenization");
  for (text::TokenId t : tokens) {
    if (t >= hp.n_vocab) fail("token {} from the tokenizer is outside the model's {} embeddings", t, hp.n_vocab);
  }
  const int64_t needed = static_cast<int64_t>(tokens.size()) + o.n_predict;
  int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : std::max<int64_t>(std::min<int64_t>(hp.n_ctx_train, 4096), needed);
  if (needed > n_ctx) {
    fail("prompt ({} tokens) + {} to generate exceed the context of {} (raise -c)", tokens.size(),
         o.n_predict, n_ctx);
  }
  const int threads = o.threads > 0 ? o.threads : default_thread_count();
  cpu::OpContext ctx(threads, model->max_row());
  const std::unique_ptr<Backend> gpu = place_model(*model, files, o.placement, n_ctx, o.kv.types(), o.ubatch);
  prepare_weights(*model, ctx, gpu.get(), o.kv.types());
  runtime::Session session(*model, ctx, n_ctx, o.ubatch, o.kv.types(), gpu.get());
  runtime::SamplerParams sp = o.sampling;
  sp.seed = o.seed >= 0 ? static_cast<uint64_t>(o.seed) : std::random_device{}();
  runtime::Sampler sampler(sp, hp.n_vocab);
  for (text::TokenId t : tokens) sampler.accept(t);
  const std::set<text::TokenId> eog = text::end_of_generation_tokens(tokenizer.vocab(), files.primary());
  text::DecodeOptions dec;
  dec.show_special = o.show_special;
  text::StreamDecoder decoder(tokenizer, dec);
  text::StopMatcher stops(o.stops);

  const auto t0 = std::chrono::steady_clock::now();
  std::span<float> logits = session.feed(tokens);
  const double prompt_seconds = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  int generated = 0;
  for (; generated < o.n_predict; ) {
    const text::TokenId next = sampler.sample(logits);
    ++generated;
    if (!o.ignore_eos && eog.count(next)) break;
    sampler.accept(next);
    std::fputs(stops.push(decoder.push(next)).c_str(), stdout);
    std::fflush(stdout);
    if (stops.stopped() || generated == o.n_predict) break;
    logits = session.feed(std::span<const text::TokenId>(&next, 1));
  }
  std::fputs(stops.push(decoder.finish()).c_str(), stdout);
  std::fputs(stops.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  const double gen_seconds = seconds_since(t1);
  fmt::print(stderr, "\nprompt: {} tokens in {:.2f} s ({:.2f} tok/s) | generation: {} tokens in {:.2f} s "
             "({:.2f} tok/s) | {} threads\n", tokens.size(), prompt_seconds,
             tokens.size() / std::max(prompt_seconds, 1e-9), generated, gen_seconds,
             generated / std::max(gen_seconds, 1e-9), threads);
}

}  // namespace

void register_run(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt");
  auto o = std::make_shared<RunOptions>();
  cmd->add_option("-m,--model", o->model, "GGUF model file (any part of a split model)")->required();
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text (control tokens like <|im_start|> are recognised)");
  cmd->add_option("-f,--file", o->prompt_file, "Read the prompt from a file");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size (0: min(training context, 4096))")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (0: the usable cores)")->capture_default_str();
  o->kv.add_to(cmd);
  o->placement.add_to(cmd);
  cmd->add_option("--ubatch-size", o->ubatch, "Prompt tokens per forward pass")->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1: off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1: off)")->capture_default_str();
  cmd->add_option("--presence-penalty", o->sampling.presence_penalty, "Presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", o->sampling.frequency_penalty, "Frequency penalty")->capture_default_str();
  cmd->add_option("--repeat-last-n", o->sampling.penalty_last_n, "Tokens the penalties look back over")->capture_default_str();
  cmd->add_option("-s,--seed", o->seed, "Random seed (-1: random)")->capture_default_str();
  cmd->add_option("--stop", o->stops, "Stop when this text appears (repeatable)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-generation tokens");
  cmd->add_flag("--special", o->show_special, "Print control tokens");
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace tandem::cli
