#include "runtime/speculative.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "runtime/engine.h"

namespace tandem::runtime {

NgramDrafter::NgramDrafter(int min_n, int max_n) : min_n_(min_n), max_n_(max_n) {
  if (min_n < 1 || max_n < min_n) fail("n-gram lookup: need 1 <= min ({}) <= max ({})", min_n, max_n);
}

void NgramDrafter::draft(std::span<const text::TokenId> context, int max, std::vector<text::TokenId>& out) {
  out.clear();
  const auto size = static_cast<int64_t>(context.size());
  if (max <= 0) return;
  for (int n = std::min<int64_t>(max_n_, size - 1); n >= min_n_; --n) {
    const std::span<const text::TokenId> key = context.subspan(static_cast<size_t>(size - n));
    // The latest earlier occurrence: scanning back from the end finds the most recent text,
    // which is the likeliest to be repeated next.
    for (int64_t at = size - n - 1; at >= 0; --at) {
      if (context[static_cast<size_t>(at)] != key[0] ||
          !std::equal(key.begin(), key.end(), context.begin() + at)) {
        continue;
      }
      const int64_t from = at + n;
      const int64_t count = std::min<int64_t>(max, size - from);
      out.assign(context.begin() + from, context.begin() + from + count);
      return;
    }
  }
}

namespace {

// The first of the largest logits within `rows` (sorted; empty: all of them), as
// std::max_element would find it over the whole row when the rest are -inf.
text::TokenId argmax_in(std::span<const float> logits, std::span<const RowRange> rows) {
  const RowRange whole{0, static_cast<int64_t>(logits.size())};
  if (rows.empty()) rows = std::span(&whole, 1);
  auto best = static_cast<text::TokenId>(rows.front().begin);
  float top = logits[static_cast<size_t>(best)];
  for (const RowRange& r : rows) {
    for (int64_t i = r.begin; i < r.end; ++i) {
      if (logits[static_cast<size_t>(i)] > top) best = static_cast<text::TokenId>(i), top = logits[static_cast<size_t>(i)];
    }
  }
  return best;
}

// The bytes of the head a model's logits read: output.weight, or the tied embedding.
uint64_t head_bytes(const gguf::ModelFiles& f) {
  const gguf::TensorInfo* head = f.find_tensor("output.weight");
  if (head == nullptr) head = f.find_tensor("token_embd.weight");  // tied
  return head != nullptr ? head->n_bytes : 0;
}

}  // namespace

MtpDrafter::MtpDrafter(const Engine& target, int64_t n_ctx, int64_t head_prefix)
    : model_(target.model()), backends_(target.backends()), D_(target.hparams().n_embd) {
  if (!model_.has_mtp()) {
    fail("--spec mtp: this {} file has no MTP (NextN) block (files converted without it, or an architecture "
         "that has none); use --spec ngram or a draft model",
         target.hparams().arch);
  }
  cache_ = model_.new_mtp_sequence(backends_, n_ctx, target.options().kv);
  workspace_ = model_.new_workspace(backends_, 64);
  logits_.resize(static_cast<size_t>(target.hparams().n_vocab));
  out_hidden_.resize(static_cast<size_t>(2 * D_));
  last_hidden_.resize(static_cast<size_t>(D_));
  if (head_prefix == kAutoHeadPrefix) head_prefix = auto_head_prefix(target);
  pruned_ = PrunedVocabulary(target.hparams().n_vocab, head_prefix);
}

int64_t MtpDrafter::auto_head_prefix(const Engine& target) {
  const gguf::ModelFiles& f = target.files();
  const uint64_t head = head_bytes(f);
  const std::string block = "blk." + std::to_string(target.hparams().n_layer) + ".";
  uint64_t step = head;
  for (const gguf::TensorInfo* t : f.tensors()) {
    if (t->name.starts_with(block)) step += t->n_bytes;
  }
  return pruned_head_prefix(target.hparams().n_vocab, target.model().output_device(), head, step);
}

MtpDrafter::~MtpDrafter() = default;

void MtpDrafter::step(std::span<const text::TokenId> tokens, const float* hidden) {
  for (size_t at = 0; at < tokens.size(); at += 64) {  // the workspace's size
    const size_t n = std::min<size_t>(64, tokens.size() - at);
    model::MtpInput in;
    in.state = cache_.get();
    in.tokens = tokens.subspan(at, n);
    in.hidden = hidden + at * static_cast<size_t>(D_);  // no logits: only the cache is wanted
    model_.mtp_forward(backends_, *workspace_, in);
  }
}

void MtpDrafter::catch_up(const FedContext& fed) {
  const auto n = static_cast<int64_t>(fed.tokens.size());
  const int64_t from = fed.hidden_from;
  const std::span<const float> rows = fed.hidden;  // positions from.. (valid below n)
  const std::span<const int32_t> tokens = fed.tokens;
  if (n == 0) return;
  if (from == 0) {  // a fresh context
    synced_ = 0;
    have_last_ = false;
    unchanged_ = 0;
  }
  if (synced_ > n - 1) synced_ = n - 1, have_last_ = false;  // cut back past what was synced
  // The first new pair needs h at synced_: from this feed, or kept from the last one. If
  // neither has it (a gap), the chain restarts at this feed (the cache's positions then run
  // behind the sequence's, which only costs guesses, never correctness).
  const bool in_rows = synced_ >= from;
  if (!in_rows && !(have_last_ && synced_ == from - 1)) synced_ = from;
  const int64_t count = n - 1 - synced_;
  cache_->n_past = synced_;  // drops the guesses' pairs
  if (count > 0) {
    const float* h = nullptr;
    if (synced_ >= from) {
      h = rows.data() + (synced_ - from) * D_;
    } else {
      pairs_.resize(static_cast<size_t>(count * D_));
      std::copy(last_hidden_.begin(), last_hidden_.end(), pairs_.begin());
      std::copy(rows.begin(), rows.begin() + (count - 1) * D_, pairs_.begin() + D_);
      h = pairs_.data();
    }
    step(tokens.subspan(static_cast<size_t>(synced_ + 1), static_cast<size_t>(count)), h);
  }
  synced_ = n - 1;
  const float* last = rows.data() + (n - 1 - from) * D_;
  std::copy(last, last + D_, last_hidden_.begin());
  have_last_ = true;
}

// The pairs of positions below n hold (the shared prefix); the hidden state at n - 1 is
// gone with the old context, so the next feed (from n) restarts the chain there, and the
// pair at position n stays the old context's until it is written again (a worse guess at
// most, never a wrong token).
void MtpDrafter::cut(int64_t n) {
  unchanged_ = std::min(unchanged_, static_cast<size_t>(std::max<int64_t>(n, 0)));
  if (synced_ >= n) {
    synced_ = std::max<int64_t>(n - 1, 0);
    have_last_ = false;
  }
}

void MtpDrafter::draft(std::span<const text::TokenId> context, int max, std::vector<text::TokenId>& out) {
  out.clear();
  // context = the session's tokens + the pending one: guesses chain from (h at synced_, pending).
  if (max <= 0 || !have_last_ || static_cast<int64_t>(context.size()) != synced_ + 2) return;
  max = static_cast<int>(std::min<int64_t>(max, cache_->n_ctx - cache_->n_past - 1));
  cache_->n_past = synced_;
  pruned_.follow(context, std::min(unchanged_, context.size()));
  unchanged_ = context.size();  // until a cut or a fresh feed says otherwise
  text::TokenId token = context.back();
  const float* h = last_hidden_.data();
  for (int i = 0; i < max; ++i) {
    float* next = out_hidden_.data() + (i % 2) * D_;  // two rows: the input one stays intact
    model::MtpInput in;
    in.state = cache_.get();
    in.tokens = std::span<const text::TokenId>(&token, 1);
    in.hidden = h;
    in.logits = logits_.data();
    in.hidden_out = next;
    in.head_rows = pruned_.rows();
    model_.mtp_forward(backends_, *workspace_, in);
    token = argmax_in(logits_, pruned_.rows());
    out.push_back(token);
    h = next;  // the block's own output carries the chain
  }
}

void check_same_vocabulary(const text::Tokenizer& target, const text::Tokenizer& draft) {
  const text::Vocab& a = target.vocab();
  const text::Vocab& b = draft.vocab();
  if (a.kind != b.kind || a.model != b.model) {
    fail("the draft model's tokenizer ({}) is not the target's ({})", b.model, a.model);
  }
  const size_t n = std::min(a.texts.size(), b.texts.size());
  for (size_t i = 0; i < n; ++i) {
    if (a.texts[i] != b.texts[i]) {
      fail("the draft model's vocabulary differs from the target's at token {}: '{}' vs '{}'", i, b.texts[i],
           a.texts[i]);
    }
  }
  if (a.texts.size() != b.texts.size()) {
    const size_t i = n;
    fail("the draft model's vocabulary differs from the target's at token {}: {} vs {}", i,
         i < b.texts.size() ? "'" + b.texts[i] + "'" : std::string("(none)"),
         i < a.texts.size() ? "'" + a.texts[i] + "'" : std::string("(none)"));
  }
}

namespace {
// TANDEM_DRAFT_HEAD_PREFIX=N overrides the rule for A/B measurements (0: the whole head); -1
// when unset.
int64_t head_prefix_override() {
  static const int64_t n = [] {
    const char* v = std::getenv("TANDEM_DRAFT_HEAD_PREFIX");
    if (v == nullptr) return int64_t{-1};
    int64_t n = -1;
    const std::string_view s(v);
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || end != s.data() + s.size() || n < 0) {
      fail("TANDEM_DRAFT_HEAD_PREFIX='{}': expected a count of vocabulary ids (0: the whole head)", v);
    }
    return n;
  }();
  return n;
}
}  // namespace

int64_t pruned_head_prefix(int64_t n_vocab, Device head_device, uint64_t head_bytes, uint64_t step_bytes) {
  if (const int64_t n = head_prefix_override(); n >= 0) return n;
  if (n_vocab <= 65536 || head_device != Device::Cpu) return 0;
  if (head_bytes == 0 || head_bytes * 5 < step_bytes) return 0;
  return kDraftHeadPrefix;
}

int64_t ModelDrafter::auto_head_prefix(const Engine& draft) {
  const gguf::ModelFiles& f = draft.files();
  uint64_t total = 0;
  for (const gguf::TensorInfo* t : f.tensors()) total += t->n_bytes;
  return pruned_head_prefix(draft.hparams().n_vocab, draft.model().output_device(), head_bytes(f), total);
}

PrunedVocabulary::PrunedVocabulary(int64_t n_vocab, int64_t prefix)
    : n_vocab_(n_vocab), prefix_(std::max<int64_t>(prefix, 0) / kHeadSubsetRows * kHeadSubsetRows) {
  if (prefix_ >= n_vocab_) prefix_ = 0;
  if (prefix_ > 0) seen_.assign(static_cast<size_t>((n_vocab_ + kHeadSubsetRows - 1) / kHeadSubsetRows), 0);
}

bool PrunedVocabulary::follow(std::span<const text::TokenId> context, size_t kept) {
  if (prefix_ == 0) return false;
  // The seen runs only grow while the context extends what was scanned; one that departs
  // from it earlier starts them again.
  bool changed = rows_.empty();
  if (kept < scanned_) {
    std::fill(seen_.begin(), seen_.end(), uint8_t{0});
    scanned_ = 0;
    changed = true;
  }
  for (size_t i = scanned_; i < context.size(); ++i) {
    const int64_t id = context[i];
    if (id < prefix_ || id >= n_vocab_) continue;
    uint8_t& s = seen_[static_cast<size_t>(id / kHeadSubsetRows)];
    changed |= s == 0;
    s = 1;
  }
  scanned_ = context.size();
  if (!changed) return false;
  rows_.assign(1, RowRange{0, prefix_});
  for (int64_t run = prefix_ / kHeadSubsetRows; run < static_cast<int64_t>(seen_.size()); ++run) {
    if (seen_[static_cast<size_t>(run)] == 0) continue;
    const int64_t begin = run * kHeadSubsetRows, end = std::min(n_vocab_, begin + kHeadSubsetRows);
    if (rows_.back().end == begin) {
      rows_.back().end = end;
    } else {
      rows_.push_back({begin, end});
    }
  }
  return true;
}

ModelDrafter::ModelDrafter(Engine& draft, const text::Tokenizer& target_vocab, int64_t target_n_vocab, int64_t n_ctx,
                           float p_min, int64_t head_prefix)
    : engine_(draft), target_n_vocab_(target_n_vocab), p_min_(p_min) {
  if (p_min < 0 || p_min > 1) fail("--draft-p-min must be within [0, 1] (got {})", p_min);
  check_same_vocabulary(target_vocab, draft.tokenizer());
  session_ = draft.new_session(n_ctx, 64);
  if (session_->state().has_recurrent_state()) {
    fail("the draft model ({}) keeps a recurrent state, which cannot follow the target's context back to a "
         "prefix; use an attention-only draft model (qwen2, qwen3, qwen3moe)",
         draft.hparams().arch);
  }
  if (head_prefix == kAutoHeadPrefix) head_prefix = auto_head_prefix(draft);
  pruned_ = PrunedVocabulary(draft.hparams().n_vocab, head_prefix);
}

ModelDrafter::~ModelDrafter() = default;

void ModelDrafter::draft(std::span<const text::TokenId> context, int max, std::vector<text::TokenId>& out) {
  out.clear();
  if (max <= 0 || context.empty()) return;
  // Keep what the draft session shares with the context; re-feed the rest (at least the
  // last token, whose logits are needed).
  const std::span<const int32_t> have = session_->tokens();
  const auto shared = static_cast<size_t>(
      std::mismatch(have.begin(), have.end(), context.begin(), context.end()).first - have.begin());
  const size_t common = std::min(shared, context.size() - 1);
  // No room to guess past the context's end.
  max = static_cast<int>(std::min<int64_t>(max, session_->n_ctx() - static_cast<int64_t>(context.size())));
  if (max <= 0) return;
  session_->truncate(static_cast<int64_t>(common));
  if (pruned_.follow(context, shared)) session_->limit_head(pruned_.rows());
  std::span<float> logits = session_->feed(context.subspan(common));
  // With a pruned head only its rows hold logits (the rest are -inf): scan those alone.
  const RowRange whole{0, static_cast<int64_t>(logits.size())};
  const std::span<const RowRange> rows = pruned_.prefix() > 0 ? pruned_.rows() : std::span(&whole, 1);
  auto each_logit = [&](auto&& fn) {
    for (const RowRange& r : rows) {
      for (int64_t i = r.begin; i < r.end; ++i) fn(i, logits[static_cast<size_t>(i)]);
    }
  };
  for (;;) {
    const text::TokenId best = argmax_in(logits, rows);  // the first of equal bests, as max_element
    const float top = logits[static_cast<size_t>(best)];
    // The guess's probability: 1 / sum(exp(l - l_best)). Logits 20 below the best add at
    // most 2e-9 each (3e-4 over 151k tokens): skipping their exp saves most of the pass.
    // With a pruned head it is the probability within the subset (the rest are -inf, exp 0):
    // a guess may look surer than it is, which only changes how far the drafter guesses.
    double sum = 0;
    each_logit([&](int64_t, float l) {
      if (l > top - 20.0f) sum += std::exp(static_cast<double>(l - top));
    });
    if (1.0 / sum < p_min_ || best >= target_n_vocab_) return;
    out.push_back(best);
    if (static_cast<int>(out.size()) >= max) return;
    logits = session_->feed(std::span<const text::TokenId>(&out.back(), 1));
  }
}

void SpeculationPacer::record(int64_t drafted, int64_t accepted) {
  window_drafted_ += drafted;
  window_accepted_ += accepted;
  if (rule_.window <= 0 || window_drafted_ < rule_.window) return;
  if (static_cast<double>(window_accepted_) < rule_.below * static_cast<double>(window_drafted_)) {
    paused_left_ = next_pause_;
    next_pause_ = std::min<int64_t>(2 * next_pause_, 32 * static_cast<int64_t>(rule_.tokens));
  } else {
    next_pause_ = rule_.tokens;
  }
  window_drafted_ = window_accepted_ = 0;
}

void decode_speculatively(Session& session, Generation& generation, Speculation& spec, std::span<float> logits,
                          const std::function<bool(const std::string&)>& on_text) {
  if (spec.drafter == nullptr) fail("speculative decoding: no drafter");
  if (spec.draft_max < 1) fail("--draft-max must be at least 1 (got {})", spec.draft_max);
  const auto V = static_cast<size_t>(logits.size());

  // One verify pass is one micro-batch; a recurrent state's rollback buffers are sized once
  // here for the longest pass.
  const int draft_cap = static_cast<int>(std::min<int64_t>(spec.draft_max, session.n_ubatch() - 1));
  if (draft_cap < 1) fail("speculative decoding needs a micro-batch of 2 tokens or more");
  session.prepare_rollback(draft_cap + 1);
  std::vector<text::TokenId> context, drafts, batch;  // reused every step
  SpeculationPacer pacer(spec.pause);
  auto emit = [&](const GenerationStep& step) {
    if (!step.text.empty() && !on_text(step.text)) generation.cancel();
  };

  GenerationStep step = generation.next(logits, session.n_ctx() - session.n_past());
  emit(step);
  while (!step.done && !generation.done()) {
    const text::TokenId pending = step.token;  // sampled, not yet in the context
    const int64_t n_before = session.n_past();
    const int64_t room = session.n_ctx() - n_before;  // >= 1, or the generation had ended
    const int max = static_cast<int>(std::min<int64_t>(draft_cap, room - 1));
    drafts.clear();
    if (pacer.take_paused_token()) {
      ++spec.stats.paused_tokens;
    } else if (max >= std::max(1, spec.draft_min)) {
      const std::span<const int32_t> have = session.tokens();
      context.assign(have.begin(), have.end());
      context.push_back(pending);
      const auto t0 = std::chrono::steady_clock::now();
      spec.drafter->draft(context, max, drafts);
      spec.stats.draft_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (static_cast<int>(drafts.size()) < spec.draft_min) drafts.clear();
    }
    generation.prefetch();  // the mask for the first position of what is fed next
    if (drafts.empty()) {
      logits = session.feed(std::span<const text::TokenId>(&pending, 1));
      spec.drafter->catch_up(session.fed_context());
      step = generation.next(logits, session.n_ctx() - session.n_past());
      emit(step);
      continue;
    }
    batch.assign(1, pending);
    batch.insert(batch.end(), drafts.begin(), drafts.end());
    const std::vector<float>& rows = session.verify(batch);
    // Sample at each position in turn; a guess is kept when it is what was sampled there.
    size_t accepted = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      std::span<float> row(const_cast<float*>(rows.data()) + i * V, V);
      step = generation.next(row, session.n_ctx() - (n_before + static_cast<int64_t>(i) + 1));
      emit(step);
      if (step.done || generation.done()) break;
      if (i < drafts.size() && step.token == drafts[i]) {
        ++accepted;
        continue;
      }
      break;  // step.token is the model's own next token: it becomes the pending one
    }
    ++spec.stats.verify_steps;
    spec.stats.drafted += static_cast<int64_t>(drafts.size());
    spec.stats.accepted += static_cast<int64_t>(accepted);
    spec.stats.tokens += static_cast<int64_t>(accepted) + 1;
    pacer.record(static_cast<int64_t>(drafts.size()), static_cast<int64_t>(accepted));
    // The context keeps the pending token and the accepted guesses (KV cut back, a recurrent
    // state rebuilt from the pass's record on its devices; all kept: nothing to do).
    session.rollback(n_before + 1 + static_cast<int64_t>(accepted));
    spec.drafter->catch_up(session.fed_context());
  }
}

SpecMethod parse_spec_method(std::string_view name, bool have_draft_model, bool target_has_mtp) {
  if (have_draft_model && (name == "none" || name == "ngram" || name == "mtp")) {
    fail("a draft model (-md) is given but --spec {} does not use a draft model", name);
  }
  if (name == "none") return SpecMethod::None;
  if (name == "ngram") return SpecMethod::Ngram;
  if (name == "draft") {
    if (!have_draft_model) fail("--spec draft needs a draft model (-md FILE)");
    return SpecMethod::Draft;
  }
  if (name == "mtp") return SpecMethod::Mtp;  // MtpDrafter says so when the file has no block
  if (name == "auto") {
    if (have_draft_model) return SpecMethod::Draft;
    return target_has_mtp ? SpecMethod::Mtp : SpecMethod::None;
  }
  fail("--spec: unknown method '{}' (none, auto, ngram, draft, mtp)", name);
}

const char* spec_method_name(SpecMethod m) {
  switch (m) {
    case SpecMethod::Ngram: return "ngram";
    case SpecMethod::Draft: return "draft";
    case SpecMethod::Mtp: return "mtp";
    case SpecMethod::None: break;
  }
  return "none";
}

SpecMethod SpeculationOptions::resolve(const Engine& target) const {
  return parse_spec_method(method, !draft_model.empty(), target.model().has_mtp());
}

std::unique_ptr<Engine> open_draft_engine(const Engine& target, const std::string& path, int64_t n_ctx,
                                          std::function<void(uint64_t, uint64_t)> load_progress) {
  EngineOptions o = target.options();
  o.model_path = path;
  o.chat_template_file.clear();
  o.placement = PlacementOptions{};  // planned in what the target left free
  o.shared_pool = target.shared_pool();
  o.plan_ctx = n_ctx;
  o.quiet = true;
  o.load_progress = std::move(load_progress);
  return std::make_unique<Engine>(o);
}

}  // namespace tandem::runtime
