#include "runtime/session.h"

#include "core/error.h"

namespace tandem::runtime {

Session::Session(const model::Model& model, const model::Backends& backends, int64_t n_ctx, int64_t n_ubatch,
                 model::KvCacheTypes kv)
    : model_(model), backends_(backends), state_(model.new_sequence(backends_, n_ctx, kv)),
      workspace_(model.new_workspace(backends_, n_ubatch)), n_ubatch_(n_ubatch),
      logits_(static_cast<size_t>(model.hparams().n_vocab)) {}

// Cuts `tokens` into micro-batches; checks the whole span fits first so that a failure
// leaves the context as it was.
void Session::run(std::span<const int32_t> tokens, float* logits, bool all_logits, bool verify) {
  if (tokens.empty()) fail("feed: no tokens");
  if (verify && static_cast<int64_t>(tokens.size()) > n_ubatch_) {
    fail("verify: {} tokens exceed one micro-batch of {} (a verify pass is one forward pass)", tokens.size(),
         n_ubatch_);
  }
  if (n_past() + static_cast<int64_t>(tokens.size()) > n_ctx()) {
    fail("context full: {} positions used + {} new tokens exceed the context of {} (raise -c)",
         n_past(), tokens.size(), n_ctx());
  }
  const auto V = static_cast<size_t>(model_.hparams().n_vocab);
  const auto D = static_cast<size_t>(model_.hparams().n_embd);
  const auto ub = static_cast<size_t>(n_ubatch_);
  if (keep_hidden_) {
    hidden_.resize(tokens.size() * D);  // grows to the longest feed, then is reused
    hidden_from_ = n_past();
  }
  for (size_t at = 0; at < tokens.size(); at += ub) {
    model::SequenceInput in;
    in.state = state_.get();
    in.tokens = tokens.subspan(at, std::min(ub, tokens.size() - at));
    in.logits = all_logits ? logits + at * V : logits;
    in.all_logits = all_logits;
    in.verify = verify;
    in.head_rows = head_rows_;
    if (keep_hidden_) in.hidden = hidden_.data() + at * D;
    model_.forward(backends_, *workspace_, std::span<const model::SequenceInput>(&in, 1));
    tokens_.insert(tokens_.end(), in.tokens.begin(), in.tokens.end());
  }
}

void Session::rollback(int64_t n) {
  const int64_t from = n_past() - state_->verify_tokens;
  if (n < from || n > n_past()) {
    fail("rollback: {} is outside the last verify pass (positions {}..{})", n, from, n_past());
  }
  state_->rollback(n - from);
  tokens_.resize(static_cast<size_t>(n));
}

void Session::truncate(int64_t n, const uint8_t* recurrent_state) {
  if (n < 0 || n > n_past()) fail("truncate: {} is outside the context's {} positions", n, n_past());
  // Within the last verify pass: rolled back, no checkpoint needed (a recurrent state only
  // past the pass's first token: the state before it is not kept).
  const int64_t pass_start = n_past() - state_->verify_tokens;
  if (state_->verify_tokens > 0 && (n > pass_start || (n == pass_start && !state_->has_recurrent_state()))) {
    return rollback(n);
  }
  if (state_->has_recurrent_state()) {
    if (recurrent_state == nullptr) fail("truncate: this model's recurrent state cannot be cut back to a prefix");
    state_->load_recurrent_state(recurrent_state);
  }
  state_->n_past = n;
  state_->verify_tokens = 0;
  tokens_.resize(static_cast<size_t>(n));
}

std::span<float> Session::feed(std::span<const int32_t> tokens) {
  run(tokens, logits_.data(), false);
  return logits_;
}

const std::vector<float>& Session::feed_all_logits(std::span<const int32_t> tokens) {
  all_logits_.resize(tokens.size() * static_cast<size_t>(model_.hparams().n_vocab));
  run(tokens, all_logits_.data(), true);
  return all_logits_;
}

const std::vector<float>& Session::verify(std::span<const int32_t> tokens) {
  state_->prepare_rollback(static_cast<int64_t>(tokens.size()));  // no-op once large enough
  all_logits_.resize(tokens.size() * static_cast<size_t>(model_.hparams().n_vocab));
  run(tokens, all_logits_.data(), true, true);
  return all_logits_;
}

}  // namespace tandem::runtime
