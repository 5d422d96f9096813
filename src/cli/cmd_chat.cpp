// `tandem chat -m MODEL`: an interactive conversation using the model's own chat template.
// Each turn re-renders the whole conversation; when the new prompt extends what is already
// in the context, only the new tokens are processed (the cache is reused).
// Commands: /exit, /reset, /think on|off (Qwen3 / Qwen3.5 thinking), /help.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <random>

#include "cli/commands.h"
#include "cli/loading.h"
#include "cli/placement.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "gguf/gguf_model_files.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "text/chat_template.h"
#include "text/detokenizer.h"
#include "text/generation_stop.h"
#include "text/tokenizer.h"

namespace tandem::cli {
namespace {

struct ChatOptions {
  std::string model, template_file, system;
  int n_predict = 1024;
  int n_ctx = 0;
  int threads = 0;
  int64_t seed = -1;
  bool think = true;
  runtime::SamplerParams sampling;
  KvCacheOptions kv;
  PlacementOptions placement;
};

void run_chat(const ChatOptions& o) {
  const gguf::ModelFiles files = gguf::ModelFiles::open(o.model);
  load_with_progress(files);
  const text::Tokenizer tokenizer = text::Tokenizer::from_gguf(files.primary());
  const text::ChatTemplate chat = o.template_file.empty()
                                      ? text::ChatTemplate::from_gguf(files.primary())
                                      : text::ChatTemplate::from_file(o.template_file, &files.primary());
  const auto model = model::load_model(files);
  const model::HParams& hp = model->hparams();
  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(hp.n_ctx_train, 4096);
  const int threads = o.threads > 0 ? o.threads : default_thread_count();
  cpu::OpContext ctx(threads, model->max_row());
  const std::unique_ptr<Backend> gpu = place_model(*model, files, o.placement, n_ctx, o.kv.types(), 64);
  prepare_weights(*model, ctx, gpu.get(), o.kv.types());
  runtime::Session session(*model, ctx, n_ctx, 64, o.kv.types(), gpu.get());
  runtime::SamplerParams sp = o.sampling;
  sp.seed = o.seed >= 0 ? static_cast<uint64_t>(o.seed) : std::random_device{}();
  runtime::Sampler sampler(sp, hp.n_vocab);
  const std::set<text::TokenId> eog = text::end_of_generation_tokens(tokenizer.vocab(), files.primary());
  const bool interactive = isatty(STDIN_FILENO);

  text::ChatInputs inputs;
  bool think = o.think;
  auto reset = [&] {
    inputs.messages = nlohmann::ordered_json::array();
    if (!o.system.empty()) inputs.messages.push_back({{"role", "system"}, {"content", o.system}});
  };
  reset();
  std::vector<text::TokenId> in_context;  // what the session holds, token by token
  fmt::print(stderr, "chat: {} ({}), context {}, {} threads. /exit, /reset, /think on|off\n",
             o.model, hp.arch, n_ctx, threads);
  std::string line;
  while (true) {
    if (interactive) fmt::print(stderr, "\n> ");
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      reset();
      session.reset();
      in_context.clear();
      fmt::print(stderr, "(conversation cleared)\n");
      continue;
    }
    if (line == "/think on" || line == "/think off") {
      think = line == "/think on";
      fmt::print(stderr, "(thinking {})\n", think ? "on" : "off");
      continue;
    }
    if (line == "/help") {
      fmt::print(stderr, "/exit  /reset  /think on|off\n");
      continue;
    }
    if (line.empty()) continue;
    inputs.messages.push_back({{"role", "user"}, {"content", line}});
    inputs.add_generation_prompt = true;
    inputs.extra["enable_thinking"] = think;
    const std::string prompt = chat.render(inputs);
    text::EncodeOptions enc;
    enc.parse_special = true;  // the template's own markers; user text was placed by the template
    enc.add_special = true;
    const std::vector<text::TokenId> tokens = tokenizer.encode(prompt, enc);
    // Reuse the cache when the new prompt extends what is in it; otherwise start over.
    const bool extends = in_context.size() < tokens.size() &&
                         std::equal(in_context.begin(), in_context.end(), tokens.begin());
    if (!extends) {
      session.reset();
      in_context.clear();
    }
    if (static_cast<int64_t>(tokens.size()) + 1 > n_ctx) {
      fmt::print(stderr, "error: the conversation ({} tokens) no longer fits the context of {}; /reset\n",
                 tokens.size(), n_ctx);
      inputs.messages.erase(inputs.messages.end() - 1);
      continue;
    }
    const std::span<const text::TokenId> fresh(tokens.data() + in_context.size(), tokens.size() - in_context.size());
    const auto t0 = std::chrono::steady_clock::now();
    std::span<float> logits = session.feed(fresh);
    in_context = tokens;
    const auto t1 = std::chrono::steady_clock::now();
    text::StreamDecoder decoder(tokenizer);
    std::string reply;
    int generated = 0;
    while (generated < o.n_predict && session.n_past() < n_ctx) {
      const text::TokenId next = sampler.sample(logits);
      ++generated;
      if (eog.count(next)) break;
      sampler.accept(next);
      const std::string piece = decoder.push(next);
      reply += piece;
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
      if (session.n_past() + 1 > n_ctx) break;
      logits = session.feed(std::span<const text::TokenId>(&next, 1));
      in_context.push_back(next);
    }
    const std::string tail = decoder.finish();
    reply += tail;
    std::fputs((tail + "\n").c_str(), stdout);
    std::fflush(stdout);
    inputs.messages.push_back({{"role", "assistant"}, {"content", reply}});
    const double pp = std::chrono::duration<double>(t1 - t0).count();
    const double tg = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    fmt::print(stderr, "[prompt {} new tokens {:.1f} tok/s | reply {} tokens {:.1f} tok/s]\n", fresh.size(),
               fresh.size() / std::max(pp, 1e-9), generated, generated / std::max(tg, 1e-9));
  }
}

}  // namespace

void register_chat(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("chat", "Chat with a model using its chat template");
  auto o = std::make_shared<ChatOptions>();
  cmd->add_option("-m,--model", o->model, "GGUF model file")->required();
  cmd->add_option("--template", o->template_file, "Jinja chat template file (default: the model's)");
  cmd->add_option("--system", o->system, "System prompt");
  cmd->add_option("-n,--n-predict", o->n_predict, "Most tokens per reply")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size (0: min(training context, 4096))")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (0: the usable cores)")->capture_default_str();
  o->kv.add_to(cmd);
  o->placement.add_to(cmd);
  cmd->add_option("-s,--seed", o->seed, "Random seed (-1: random)")->capture_default_str();
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1: off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1: off)")->capture_default_str();
  cmd->add_flag("!--no-think", o->think, "Start with thinking off (Qwen3/Qwen3.5 templates)");
  cmd->callback([o] { run_chat(*o); });
}

}  // namespace tandem::cli
