// Generating text for one sequence: sampling, end-of-generation tokens, stop strings,
// streaming detokenization and the token budget, as one state machine that every caller
// steps with the logits of its sequence. `run` and `chat` drive it over a Session with
// generate(); the server's scheduler drives one per slot inside its batched steps. The
// rules of when and how generation ends therefore exist once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "grammar/mask_prefetch.h"
#include "grammar/token_constraint.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "text/detokenizer.h"
#include "text/generation_stop.h"
#include "text/tokenizer.h"

namespace tandem::runtime {

// Where a grammar starts to apply in a reasoning model's answer.
enum class ThinkGate {
  None,      // from the first token
  Open,      // the prompt ended inside <think>: after the model writes </think>
  Optional,  // the model may open <think> with its first token; then after </think>
};

struct GenerationParams {
  SamplerParams sampling;       // seed already resolved
  int64_t max_tokens = -1;      // < 0: until the context is full
  std::vector<std::string> stops;
  bool ignore_eos = false;
  bool show_special = false;    // control tokens rendered as text
  int top_logprobs = -1;        // < 0: no log-probabilities; 0..20: the chosen token's and this many others
  // Structured output: the text (after the think gate) must be a sentence of this grammar.
  std::shared_ptr<const grammar::Grammar> grammar;
  ThinkGate think_gate = ThinkGate::None;
  // Compute the grammar's mask on a thread of its own during each forward pass (prefetch()):
  // worth it when the forward leaves a CPU core idle (GPU layers, or fewer pool threads than
  // usable cores); on a CPU whose every core runs the pool it would only compete.
  bool prefetch_mask = false;
};

enum class FinishReason { None, EndOfGeneration, StopString, Length, ContextFull, Cancelled };
const char* finish_reason_name(FinishReason r);  // "stop", "length", ... as OpenAI spells them

struct TokenLogprob {
  text::TokenId token = -1;
  float logprob = 0;
};

// What one step produced.
struct GenerationStep {
  text::TokenId token = -1;      // the sampled token (also when it ended generation)
  std::string text;              // text now safe to show (stop strings held back)
  bool done = false;             // generation ended; do not feed `token`
  std::vector<TokenLogprob> top; // chosen token first, then the most likely others (top_logprobs >= 0)
};

class Generation {
 public:
  Generation(const text::Tokenizer& tokenizer, const std::set<text::TokenId>& end_of_generation,
             GenerationParams params, int64_t n_vocab);

  // Tokens already in the context (the prompt): they count for the repetition penalties.
  void accept_prompt(std::span<const text::TokenId> tokens);
  // Samples the next token from `logits` (modified in place). `room` is how many more tokens
  // the sequence's context can take. When !done, the caller feeds step.token next.
  GenerationStep next(std::span<float> logits, int64_t room);
  // Ends generation from outside (client gone, server stopping).
  void cancel() { finish(FinishReason::Cancelled); }
  // Text held back at the end (an unfinished UTF-8 character, a partial stop string).
  std::string drain();
  // Called just before the forward pass that will produce the next logits: with
  // params.prefetch_mask and a grammar in force, its mask is computed meanwhile.
  void prefetch();

  bool done() const { return reason_ != FinishReason::None; }
  FinishReason reason() const { return reason_; }
  int64_t generated() const { return generated_; }
  // Every token sampled so far (the last one may have ended generation and is not fed).
  const std::vector<text::TokenId>& tokens() const { return tokens_; }
  const GenerationParams& params() const { return params_; }

 private:
  void finish(FinishReason r) {
    if (reason_ == FinishReason::None) reason_ = r;
  }
  void log_probabilities(std::span<const float> logits, text::TokenId chosen, std::vector<TokenLogprob>& out);
  // The sampler's choice if the grammar allows it, else a draw from the allowed tokens
  // (kNoToken when none is allowed).
  text::TokenId constrain(text::TokenId chosen, std::span<float> logits);
  // Moves the grammar (or the think gate) past a token that entered the text.
  void advance_constraint(text::TokenId token);

  const std::set<text::TokenId>* eog_;
  GenerationParams params_;
  Sampler sampler_;
  text::StreamDecoder decoder_;
  text::StopMatcher stops_;
  FinishReason reason_ = FinishReason::None;
  int64_t generated_ = 0;
  std::vector<text::TokenId> tokens_;
  std::vector<std::pair<float, int32_t>> top_scratch_;
  const text::Tokenizer* tokenizer_;
  std::unique_ptr<grammar::TokenConstraint> constraint_;
  std::unique_ptr<grammar::MaskPrefetch> prefetch_;  // after constraint_: stopped before it goes
  ThinkGate gate_ = ThinkGate::None;  // None once the grammar applies
  std::string think_tail_;            // the text since the gate opened, to find </think>
  std::vector<float> raw_logits_;     // the logits before sampling (reused)
};

struct GenerationStats {
  int64_t prompt_tokens = 0, generated = 0;
  double prompt_seconds = 0, generation_seconds = 0;
  FinishReason reason = FinishReason::None;
};

struct Speculation;  // speculative.h

// The single-sequence loop: feeds `prompt` (the new tokens; the session may already hold
// earlier ones), then samples and feeds until the generation ends. on_text receives the
// text as it becomes final and returns false to stop early (FinishReason::Cancelled).
// With `speculation`, guessed tokens are checked in batched passes (speculative.h).
GenerationStats generate(Session& session, Generation& generation, std::span<const text::TokenId> prompt,
                         const std::function<bool(const std::string&)>& on_text,
                         Speculation* speculation = nullptr);

}  // namespace tandem::runtime
