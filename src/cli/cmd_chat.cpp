// `tandem chat -m MODEL`: an interactive conversation using the model's own chat template.
// Each turn re-renders the whole conversation; when the new prompt extends what is already
// in the context, only the new tokens are processed (the cache is reused).
// Commands: /exit, /reset, /think on|off (Qwen3 / Qwen3.5 thinking), /help.
// With -p TEXT it answers that one message and exits (the README's first command).
#include <fmt/format.h>
#include <unistd.h>

#include <iostream>
#include <random>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "grammar/structured_output.h"
#include "runtime/engine.h"
#include "runtime/generation.h"
#include "text/chat_prompt.h"

namespace tandem::cli {
namespace {

constexpr int64_t kUbatch = 64;

struct ChatOptions {
  EngineFlags engine;
  std::string template_file, system;
  std::string prompt;  // -p: one message, one reply, then exit
  int n_predict = 1024;
  int n_ctx = 0;
  int64_t seed = -1;
  bool think = true;
  runtime::SamplerParams sampling;
  SpeculativeFlags spec;
  GrammarFlags grammar;
};

void run_chat(const ChatOptions& o) {
  // Every reply follows the grammar; a reasoning model's after its </think>.
  const std::shared_ptr<const grammar::Grammar> constraint = o.grammar.compile(/*leading_space=*/true);
  runtime::EngineOptions eo = o.engine.engine_options(0, kUbatch);
  eo.placement.mtp = o.spec.may_use_mtp();  // the MTP block placed as every-token weights
  eo.chat_template_file = o.template_file;
  runtime::Engine engine(eo);
  const text::ChatTemplate& chat = engine.chat_template();
  const model::HParams& hp = engine.hparams();
  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(hp.n_ctx_train, 4096);
  engine.place(n_ctx, kUbatch);
  const std::unique_ptr<runtime::Session> session = engine.new_session(n_ctx, kUbatch);
  SpeculativeSetup spec = SpeculativeSetup::open(o.spec, engine, n_ctx);
  runtime::GenerationParams gp;
  gp.sampling = o.sampling;
  gp.sampling.seed = o.seed >= 0 ? static_cast<uint64_t>(o.seed) : std::random_device{}();
  gp.max_tokens = o.n_predict;
  const bool interactive = isatty(STDIN_FILENO);

  text::ChatInputs inputs;
  bool think = o.think;
  auto reset = [&] {
    inputs.messages = nlohmann::ordered_json::array();
    if (!o.system.empty()) inputs.messages.push_back({{"role", "system"}, {"content", o.system}});
  };
  reset();
  fmt::print(stderr, "chat: {} ({}), context {}, {} threads. /exit, /reset, /think on|off\n",
             eo.model_path, hp.arch, n_ctx, engine.threads());
  std::string line;
  bool answered = false;
  while (true) {
    if (!o.prompt.empty()) {
      if (answered) break;
      line = o.prompt;
      answered = true;
    } else {
      if (interactive) fmt::print(stderr, "\n> ");
      if (!std::getline(std::cin, line)) break;
    }
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      reset();
      session->reset();
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
    // The template's own markers are control tokens; the user's text never becomes one.
    const text::ChatPrompt prompt = text::encode_chat(chat, engine.tokenizer(), inputs);
    const std::vector<text::TokenId>& tokens = prompt.tokens;
    // Reuse the cache when the new prompt extends what is in it; otherwise start over.
    const std::span<const int32_t> held = session->tokens();
    const bool extends = held.size() < tokens.size() && std::equal(held.begin(), held.end(), tokens.begin());
    if (!extends) session->reset();
    if (static_cast<int64_t>(tokens.size()) + 1 > n_ctx) {
      fmt::print(stderr, "error: the conversation ({} tokens) no longer fits the context of {}; /reset\n",
                 tokens.size(), n_ctx);
      inputs.messages.erase(inputs.messages.end() - 1);
      continue;
    }
    const std::span<const text::TokenId> fresh(tokens.data() + session->n_past(),
                                               tokens.size() - static_cast<size_t>(session->n_past()));
    ++gp.sampling.seed;  // each reply draws its own numbers
    if (constraint) {
      gp.grammar = constraint;
      gp.think_gate = grammar::ends_inside_think(prompt.text) ? runtime::ThinkGate::Open : runtime::ThinkGate::Optional;
      gp.prefetch_mask = engine.forward_leaves_a_core_idle();
    }
    runtime::Generation generation(engine.tokenizer(), engine.end_of_generation(), gp, hp.n_vocab);
    generation.accept_prompt(tokens);
    std::string reply;
    auto print = [&](const std::string& text) {
      reply += text;
      std::fputs(text.c_str(), stdout);
      std::fflush(stdout);
      return true;
    };
    const runtime::GenerationStats st =
        runtime::generate(*session, generation, fresh, print, spec.on() ? &spec.speculation : nullptr);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    inputs.messages.push_back({{"role", "assistant"}, {"content", reply}});
    fmt::print(stderr, "[prompt {} new tokens {:.1f} tok/s | reply {} tokens {:.1f} tok/s]\n", fresh.size(),
               fresh.size() / std::max(st.prompt_seconds, 1e-9), st.generated,
               st.generated / std::max(st.generation_seconds, 1e-9));
  }
  if (spec.on()) fmt::print(stderr, "{}\n", spec.report());
}

}  // namespace

void register_chat(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("chat", "Chat with a model using its chat template");
  auto o = std::make_shared<ChatOptions>();
  o->engine.add_to(cmd);
  cmd->add_option("--template", o->template_file, "Jinja chat template file (default: the model's)");
  cmd->add_option("--system", o->system, "System prompt");
  cmd->add_option("-p,--prompt", o->prompt, "Answer this one message and exit (no interactive input)");
  cmd->add_option("-n,--n-predict", o->n_predict, "Most tokens per reply")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size (0: min(training context, 4096))")->capture_default_str();
  cmd->add_option("-s,--seed", o->seed, "Random seed (-1: random)")->capture_default_str();
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1: off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1: off)")->capture_default_str();
  cmd->add_flag("!--no-think", o->think, "Start with thinking off (Qwen3/Qwen3.5 templates)");
  o->spec.add_to(cmd);
  o->grammar.add_to(cmd);
  cmd->callback([o] { run_chat(*o); });
}

}  // namespace tandem::cli
