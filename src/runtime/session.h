// One conversation's worth of model state: feed it tokens (a prompt of any length is cut
// into micro-batches), read the logits of the last one, repeat. Owns nothing global: the
// model and the backends (thread pool, scratch, GPU) are handed in and shared; an Engine
// (runtime/engine.h) makes sessions on its own.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "model/model.h"

namespace tandem::runtime {

// What a target sequence holds right after a feed (or a cut back), for drafters that follow
// its hidden states: the whole context, and the final hidden states (after output_norm) of
// the positions just fed.
struct FedContext {
  std::span<const int32_t> tokens;  // every token of the context, in order
  std::span<const float> hidden;     // [fed positions][n_embd], valid below tokens.size()
  int64_t hidden_from = 0;           // the position of hidden's first row
};

class Session {
 public:
  // backends.gpu serves the layers the model's placement puts on Device::Cuda (nullptr when
  // the placement is all-CPU).
  Session(const model::Model& model, const model::Backends& backends, int64_t n_ctx, int64_t n_ubatch = 64,
          model::KvCacheTypes kv = {});

  // Appends tokens to the context and returns the logits after the last one (n_vocab
  // floats, valid until the next call). Fails with a clear error if the context is full.
  std::span<float> feed(std::span<const int32_t> tokens);
  // Logits at every position of `tokens` ([tokens][n_vocab]), e.g. for perplexity.
  const std::vector<float>& feed_all_logits(std::span<const int32_t> tokens);

  int64_t n_past() const { return state_->n_past; }
  int64_t n_ctx() const { return state_->n_ctx; }
  // The tokens in the context, in order (n_past of them).
  std::span<const int32_t> tokens() const { return tokens_; }
  void reset() {
    state_->clear();
    tokens_.clear();
    hidden_from_ = 0;
  }
  // Keep every fed position's final hidden state (after output_norm) from the last feed, for
  // an MTP drafter: hidden() holds [tokens of that feed][n_embd], the first at hidden_from().
  void keep_hidden(bool on) { keep_hidden_ = on; }
  std::span<const float> hidden() const { return hidden_; }
  int64_t hidden_from() const { return hidden_from_; }
  // The context and the last feed's hidden states, as a drafter reads them.
  FedContext fed_context() const { return {tokens(), hidden_, hidden_from_}; }
  // A speculative verify pass: appends tokens (one micro-batch at most) and returns the
  // logits at every position ([tokens][n_vocab]); afterwards rollback(n) may keep any
  // prefix of them (at least the first with a recurrent state). Room for the pass is made on first use (prepare_rollback sizes it once
  // for the longest pass to come).
  const std::vector<float>& verify(std::span<const int32_t> tokens);
  void prepare_rollback(int64_t max_tokens) { state_->prepare_rollback(max_tokens); }
  // Keeps the context's first n tokens, n within the last verify pass (the tokens before it
  // stay): no second pass, no host copy, whatever the model's state (SequenceState::rollback).
  void rollback(int64_t n);
  // Cuts the context back to its first n tokens. Attention KV rows past n are simply
  // overwritten later. A recurrent state cannot be cut in general: within the last verify
  // pass (past its first token) this is rollback(n); otherwise a model with one needs
  // `recurrent_state`, a copy saved when the context held exactly those n tokens
  // (SequenceState::save_recurrent_state).
  void truncate(int64_t n, const uint8_t* recurrent_state = nullptr);
  // Logits of later feeds over these vocabulary ids only, every other one -inf
  // (Backend::logits_subset: a draft model's cheaper head). The caller keeps `rows` alive
  // and unchanged while feeding; empty: the whole vocabulary.
  void limit_head(std::span<const RowRange> rows) { head_rows_ = rows; }
  int64_t n_ubatch() const { return n_ubatch_; }
  model::SequenceState& state() { return *state_; }

 private:
  void run(std::span<const int32_t> tokens, float* logits, bool all_logits, bool verify = false);

  const model::Model& model_;
  model::Backends backends_;
  std::unique_ptr<model::SequenceState> state_;
  std::unique_ptr<model::Workspace> workspace_;
  int64_t n_ubatch_;
  std::vector<int32_t> tokens_;    // what the context holds
  bool keep_hidden_ = false;
  std::vector<float> hidden_;      // [last feed's tokens][n_embd] when keep_hidden_
  int64_t hidden_from_ = 0;
  std::vector<float> logits_;      // [n_vocab]
  std::vector<float> all_logits_;  // grown on demand by feed_all_logits
  std::span<const RowRange> head_rows_;
};

}  // namespace tandem::runtime
