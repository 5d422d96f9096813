// `tandem run -m MODEL -p PROMPT`: load, tokenize, generate, stream the text, report speed.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "grammar/structured_output.h"
#include "runtime/engine.h"
#include "runtime/generation.h"

namespace tandem::cli {
namespace {

struct RunOptions {
  EngineFlags engine;
  std::string prompt;
  std::string prompt_file;
  int n_predict = 128;
  int n_ctx = 0;  // 0: min(training context, 4096), at least prompt + n_predict
  int ubatch = 64;
  int64_t seed = -1;  // -1: random
  bool ignore_eos = false;
  bool show_special = false;
  std::vector<std::string> stops;
  runtime::SamplerParams sampling;
  SpeculativeFlags spec;
  GrammarFlags grammar;
};

void run_generate(const RunOptions& o) {
  if (o.prompt.empty() == o.prompt_file.empty()) fail("give exactly one of -p PROMPT or -f FILE");
  const std::string prompt = o.prompt_file.empty() ? o.prompt : read_text_file(o.prompt_file, "-f (the prompt)");
  if (o.n_predict < 0) fail("-n must be >= 0 (got {})", o.n_predict);
  // A prompt that ends inside <think>: the grammar holds after the model's </think>.
  const bool in_think = grammar::ends_inside_think(prompt);
  const std::shared_ptr<const grammar::Grammar> constraint = o.grammar.compile(in_think);  // errors before loading

  runtime::EngineOptions eo = o.engine.engine_options(/*plan_ctx=*/0, o.ubatch);
  eo.placement.mtp = o.spec.may_use_mtp();  // the MTP block placed as every-token weights
  runtime::Engine engine(eo);  // placed below
  const model::HParams& hp = engine.hparams();
  text::EncodeOptions enc;
  enc.add_special = true;
  enc.parse_special = true;  // a raw prompt may spell out control tokens, as in llama.cpp
  const std::vector<text::TokenId> tokens = engine.tokenize(prompt, enc);
  if (tokens.empty()) fail("the prompt is empty after tokenization");
  const int64_t needed = static_cast<int64_t>(tokens.size()) + o.n_predict;
  int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : std::max<int64_t>(std::min<int64_t>(hp.n_ctx_train, 4096), needed);
  if (needed > n_ctx) {
    fail("prompt ({} tokens) + {} to generate exceed the context of {} (raise -c)", tokens.size(),
         o.n_predict, n_ctx);
  }
  engine.place(n_ctx, o.ubatch);
  const std::unique_ptr<runtime::Session> session = engine.new_session(n_ctx, o.ubatch);
  runtime::GenerationParams gp;
  gp.sampling = o.sampling;
  gp.sampling.seed = o.seed >= 0 ? static_cast<uint64_t>(o.seed) : std::random_device{}();
  gp.max_tokens = o.n_predict;
  gp.stops = o.stops;
  gp.ignore_eos = o.ignore_eos;
  gp.show_special = o.show_special;
  SpeculativeSetup spec = SpeculativeSetup::open(o.spec, engine, n_ctx);
  gp.grammar = constraint;
  gp.think_gate = in_think ? runtime::ThinkGate::Open : runtime::ThinkGate::None;
  gp.prefetch_mask = engine.forward_leaves_a_core_idle();
  runtime::Generation generation(engine.tokenizer(), engine.end_of_generation(), gp, hp.n_vocab);
  generation.accept_prompt(tokens);
  bool printed = false;
  auto print = [&printed](const std::string& text) {
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    printed = true;
    return true;
  };
  runtime::GenerationStats st;
  try {
    st = runtime::generate(*session, generation, tokens, print, spec.on() ? &spec.speculation : nullptr);
  } catch (const Error&) {
    if (printed) std::fputs("\n", stdout);  // the error message goes on a line of its own
    std::fflush(stdout);
    throw;
  }
  std::fputs("\n", stdout);
  if (spec.on()) fmt::print(stderr, "\n{}", spec.report());
  fmt::print(stderr, "\nprompt: {} tokens in {:.2f} s ({:.2f} tok/s) | generation: {} tokens in {:.2f} s "
             "({:.2f} tok/s) | {} threads\n", st.prompt_tokens, st.prompt_seconds,
             st.prompt_tokens / std::max(st.prompt_seconds, 1e-9), st.generated, st.generation_seconds,
             st.generated / std::max(st.generation_seconds, 1e-9), engine.threads());
}

}  // namespace

void register_run(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt");
  auto o = std::make_shared<RunOptions>();
  o->engine.add_to(cmd);
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text (control tokens like <|im_start|> are recognised)");
  cmd->add_option("-f,--file", o->prompt_file, "Read the prompt from a file");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size (0: min(training context, 4096))")->capture_default_str();
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
  o->spec.add_to(cmd);
  o->grammar.add_to(cmd);
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace tandem::cli
