#include "runtime/generation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "runtime/speculative.h"

namespace tandem::runtime {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::EndOfGeneration:
    case FinishReason::StopString:
      return "stop";
    case FinishReason::Length:
    case FinishReason::ContextFull:
      return "length";
    case FinishReason::Cancelled:
      return "cancelled";
    case FinishReason::None:
      break;
  }
  return "none";
}

namespace {
text::DecodeOptions decode_options(const GenerationParams& p) {
  text::DecodeOptions d;
  d.show_special = p.show_special;
  return d;
}
}  // namespace

Generation::Generation(const text::Tokenizer& tokenizer, const std::set<text::TokenId>& end_of_generation,
                       GenerationParams params, int64_t n_vocab)
    : eog_(&end_of_generation),
      params_(std::move(params)),
      sampler_(params_.sampling, n_vocab),
      decoder_(tokenizer, decode_options(params_)),
      stops_(params_.stops),
      tokenizer_(&tokenizer) {
  if (params_.grammar) {
    constraint_ = std::make_unique<grammar::TokenConstraint>(params_.grammar, tokenizer, end_of_generation);
    gate_ = params_.think_gate;
    if (params_.prefetch_mask) prefetch_ = std::make_unique<grammar::MaskPrefetch>(*constraint_);
  }
  if (params_.top_logprobs > 20) fail("top_logprobs must be at most 20 (got {})", params_.top_logprobs);
  if (params_.max_tokens == 0) finish(FinishReason::Length);
}

void Generation::accept_prompt(std::span<const text::TokenId> tokens) {
  for (text::TokenId t : tokens) sampler_.accept(t);
}

void Generation::log_probabilities(std::span<const float> logits, text::TokenId chosen,
                                   std::vector<TokenLogprob>& out) {
  // log-softmax of the model's own distribution (before penalties and truncation), as
  // OpenAI reports it.
  float max_logit = logits[0];
  for (float l : logits) max_logit = std::max(max_logit, l);
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max_logit));
  const float log_z = max_logit + static_cast<float>(std::log(sum));
  out.push_back({chosen, logits[static_cast<size_t>(chosen)] - log_z});
  const auto k = static_cast<size_t>(params_.top_logprobs);
  if (k == 0) return;
  top_scratch_.clear();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (top_scratch_.size() < k) {
      top_scratch_.emplace_back(logits[i], static_cast<int32_t>(i));
      std::push_heap(top_scratch_.begin(), top_scratch_.end(), std::greater<>());
    } else if (logits[i] > top_scratch_.front().first) {
      std::pop_heap(top_scratch_.begin(), top_scratch_.end(), std::greater<>());
      top_scratch_.back() = {logits[i], static_cast<int32_t>(i)};
      std::push_heap(top_scratch_.begin(), top_scratch_.end(), std::greater<>());
    }
  }
  std::sort(top_scratch_.begin(), top_scratch_.end(),
            [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  for (const auto& [l, id] : top_scratch_) out.push_back({id, l - log_z});
}

text::TokenId Generation::constrain(text::TokenId chosen, std::span<float> logits) {
  // Sampling from the model's (truncated) distribution and resampling from the allowed
  // tokens only when the choice is rejected: greedy picks exactly the best allowed token,
  // and the full mask is computed only on a rejection (llama.cpp's order of the two).
  if (constraint_->allows(chosen)) return chosen;
  const std::span<const text::TokenId> allowed = constraint_->allowed();
  if (allowed.empty()) return text::kNoToken;
  std::fill(logits.begin(), logits.end(), -std::numeric_limits<float>::infinity());
  for (text::TokenId t : allowed) logits[static_cast<size_t>(t)] = raw_logits_[static_cast<size_t>(t)];
  return sampler_.sample(logits);
}

void Generation::advance_constraint(text::TokenId token) {
  if (!constraint_) return;
  if (gate_ == ThinkGate::None) {
    constraint_->accept(token);
    return;
  }
  const std::string& piece = tokenizer_->piece(token);
  if (gate_ == ThinkGate::Optional) {
    gate_ = ThinkGate::Open;  // the model opened <think> (the only way here: see next())
    think_tail_.clear();
  }
  think_tail_ += piece;
  const size_t close = think_tail_.find("</think>");
  if (close == std::string::npos) {
    if (think_tail_.size() > 64) think_tail_.erase(0, think_tail_.size() - 16);
    return;
  }
  gate_ = ThinkGate::None;
  // Text after </think> in the same token starts the answer (a rejected one is left alone).
  constraint_->accept_bytes(std::string_view(think_tail_).substr(close + 8));
}

void Generation::prefetch() {
  // Inside <think> the grammar does not apply yet (and the state does not move).
  if (prefetch_ && !done() && gate_ != ThinkGate::Open) prefetch_->start();
}

GenerationStep Generation::next(std::span<float> logits, int64_t room) {
  if (prefetch_) prefetch_->wait();  // the constraint is ours again (an error in it surfaces here)
  GenerationStep step;
  if (done()) {
    step.done = true;
    return step;
  }
  const bool constrained = constraint_ && gate_ != ThinkGate::Open;
  if (constrained || params_.top_logprobs >= 0) raw_logits_.assign(logits.begin(), logits.end());
  step.token = sampler_.sample(logits);
  if (constrained) {
    const bool opens_think = gate_ == ThinkGate::Optional && tokenizer_->vocab().valid(step.token) &&
                             tokenizer_->piece(step.token).rfind("<think>", 0) == 0;
    if (!opens_think) {
      gate_ = ThinkGate::None;
      step.token = constrain(step.token, logits);
    }
  }
  if (step.token == text::kNoToken) {  // the grammar allows nothing (it is complete and EOG is ignored)
    finish(FinishReason::EndOfGeneration);
    step.done = true;
    step.text = drain();
    return step;
  }
  // log-probabilities of the model's own distribution (before penalties, truncation and grammar)
  if (params_.top_logprobs >= 0) log_probabilities(raw_logits_, step.token, step.top);
  ++generated_;
  tokens_.push_back(step.token);
  if ((!params_.ignore_eos || (constraint_ && gate_ == ThinkGate::None)) && eog_->count(step.token)) {
    finish(FinishReason::EndOfGeneration);
    step.done = true;
    step.text = drain();
    return step;
  }
  sampler_.accept(step.token);
  advance_constraint(step.token);
  step.text = stops_.push(decoder_.push(step.token));
  if (stops_.stopped()) {
    finish(FinishReason::StopString);
  } else if (params_.max_tokens >= 0 && generated_ >= params_.max_tokens) {
    finish(FinishReason::Length);
  } else if (room < 1) {
    finish(FinishReason::ContextFull);
  }
  if (done()) {
    step.done = true;
    step.text += drain();
  }
  return step;
}

std::string Generation::drain() {
  if (stops_.stopped()) return {};
  std::string tail = stops_.push(decoder_.finish());
  return tail + stops_.flush();
}

GenerationStats generate(Session& session, Generation& generation, std::span<const text::TokenId> prompt,
                         const std::function<bool(const std::string&)>& on_text, Speculation* speculation) {
  using Clock = std::chrono::steady_clock;
  GenerationStats stats;
  stats.prompt_tokens = static_cast<int64_t>(prompt.size());
  const auto t0 = Clock::now();
  if (speculation != nullptr) session.keep_hidden(speculation->drafter->needs_hidden());
  generation.prefetch();
  std::span<float> logits = session.feed(prompt);
  if (speculation != nullptr) speculation->drafter->catch_up(session.fed_context());
  const auto t1 = Clock::now();
  stats.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
  if (speculation != nullptr) {
    decode_speculatively(session, generation, *speculation, logits, on_text);
  } else {
    while (!generation.done()) {
      const GenerationStep step = generation.next(logits, session.n_ctx() - session.n_past());
      if (!step.text.empty() && !on_text(step.text)) generation.cancel();
      if (step.done || generation.done()) break;
      generation.prefetch();
      logits = session.feed(std::span<const text::TokenId>(&step.token, 1));
    }
  }
  stats.generated = generation.generated();
  stats.generation_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  stats.reason = generation.reason();
  return stats;
}

}  // namespace tandem::runtime
