// Speculative decoding. Decode reads every active weight once per token, so it is bound by
// memory bandwidth; checking k guessed tokens in one forward pass reads the weights once
// for k+1 positions. A drafter guesses the next tokens cheaply (n-gram lookup in the
// context, or a small model with the same vocabulary); the model runs [last token, guesses]
// in one pass; the generation samples from each position's logits in order and keeps the
// guesses up to the first one it did not sample itself. Every kept token was sampled from
// the model's own distribution at its own position, with the same random draws as without
// speculation, so the output is the same (token for token at temperature 0, and with the
// same seed at any temperature, as far as the batched pass's logits equal single steps').
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/generation.h"
#include "runtime/session.h"
#include "text/tokenizer.h"

namespace tandem::runtime {

class Engine;

// Proposes tokens to follow a context.
class Drafter {
 public:
  virtual ~Drafter() = default;
  // Up to `max` tokens likely to follow `context` (the whole sequence so far) into `out`
  // (cleared first). Fewer, or none, when it has no good guess.
  virtual void draft(std::span<const text::TokenId> context, int max, std::vector<text::TokenId>& out) = 0;
  // Drafters that read the model's hidden states (MTP) see every feed of the target session
  // right after it happens (and after the context is cut back).
  virtual bool needs_hidden() const { return false; }
  virtual void catch_up(const FedContext& /*fed*/) {}
  // The target's context was cut back to its first n tokens outside a verify pass (a
  // server slot reusing a cached prefix): what the drafter kept past that is stale.
  virtual void cut(int64_t /*n*/) {}
};

// Prompt lookup: the longest n-gram (n from max_n down to min_n) ending the context that
// also occurs earlier in it; the tokens that followed its latest earlier occurrence are the
// guess. No weights; pays off where the answer quotes its input (code edits, RAG).
class NgramDrafter final : public Drafter {
 public:
  NgramDrafter(int min_n, int max_n);
  void draft(std::span<const text::TokenId> context, int max, std::vector<text::TokenId>& out) override;

 private:
  int min_n_, max_n_;
};

// Pruned draft vocabulary: a guess only steers speculation (the target checks it), so a
// drafter may pick its guesses from a subset of the vocabulary. Where its output head is a
// large share of what a guess reads (a 0.5B draft model's 151k-token head: ~40%; an MTP
// block's 248k-token head: ~90%), it computes logits only for the ids below a prefix (BPE
// ids come in merge order, roughly by frequency) and for the runs of kHeadSubsetRows ids
// holding any id seen in the context (the prompt and what was generated); every other logit
// is -inf. A guess is lost to pruning only where the model's token is outside that subset.
//
// The prefix, in ids. Qwen2.5-Coder-0.5B drafting for the 1.5B on a code prompt
// (bench/RESULTS.md): ids < 32768 cover 96% of generated code (as many as < 65536), and the
// head then reads 21 MB instead of 145 MB a guess. Qwen3.5's 248k vocabulary keeps Qwen2's
// first ids (the tokenizer test vectors share their ids).
inline constexpr int64_t kDraftHeadPrefix = 32768;

class PrunedVocabulary {
 public:
  PrunedVocabulary() = default;  // off: the whole head
  // `prefix` rounds down to whole runs of kHeadSubsetRows; off when that is 0 or covers the
  // vocabulary.
  PrunedVocabulary(int64_t n_vocab, int64_t prefix);
  // 0 while off.
  int64_t prefix() const { return prefix_; }
  // Follows `context`, whose first `kept` tokens are those followed so far, unchanged (fewer
  // than were followed, as for a new conversation on a server slot: the seen runs start
  // again). True when rows() changed (their storage may have moved).
  bool follow(std::span<const text::TokenId> context, size_t kept);
  // [0, prefix) and the seen runs past it, merged; empty while off or before follow.
  std::span<const RowRange> rows() const { return rows_; }

 private:
  int64_t n_vocab_ = 0, prefix_ = 0;
  std::vector<uint8_t> seen_;  // per run of kHeadSubsetRows ids: holds an id of the context
  size_t scanned_ = 0;         // context tokens marked in seen_
  std::vector<RowRange> rows_;
};

// The prefix for a drafter's head (0: the whole head): kDraftHeadPrefix when the head runs
// on the CPU (a GPU computes the whole head anyway: Backend::logits_subset's default), the
// vocabulary is over 64k ids and the head is at least a fifth of `step_bytes` (the weights
// a guess reads, head included, or a bound on them). TANDEM_DRAFT_HEAD_PREFIX=N forces N (0:
// the whole head), for A/B runs.
int64_t pruned_head_prefix(int64_t n_vocab, Device head_device, uint64_t head_bytes, uint64_t step_bytes);

// A small model with the target's vocabulary guesses greedily, stopping when its top
// token's probability falls below p_min. Its session follows the target's context: the
// common prefix is kept, the rest re-fed, so rejected guesses cost nothing later. Its head
// may be pruned (above).
class ModelDrafter final : public Drafter {
 public:
  // head_prefix for the constructor: let auto_head_prefix choose.
  static constexpr int64_t kAutoHeadPrefix = -1;
  // `draft` must be placed; its vocabulary must match `target_vocab` (else an error naming
  // the first token that differs). n_ctx: the target session's context. head_prefix: 0 for
  // the whole head, else the pruned vocabulary's prefix (rounded down to whole runs of
  // kHeadSubsetRows; the whole head when that covers it).
  ModelDrafter(Engine& draft, const text::Tokenizer& target_vocab, int64_t target_n_vocab, int64_t n_ctx,
               float p_min, int64_t head_prefix = kAutoHeadPrefix);
  ~ModelDrafter() override;
  void draft(std::span<const text::TokenId> context, int max, std::vector<text::TokenId>& out) override;
  // The prefix of the vocabulary the drafter's head always computes (0: the whole head).
  int64_t head_prefix() const { return pruned_.prefix(); }
  // The vocabulary ids the head computed for the last guess (empty: all).
  std::span<const RowRange> head_rows() const { return pruned_.rows(); }
  // pruned_head_prefix for a draft model: its head against all its weights' bytes.
  static int64_t auto_head_prefix(const Engine& draft);

 private:
  Engine& engine_;
  std::unique_ptr<Session> session_;
  int64_t target_n_vocab_;
  float p_min_;
  PrunedVocabulary pruned_;
};

// The model's own MTP (NextN) block (Qwen3.5): from the trunk's final hidden state h_{p-1} and
// the token x_p it chose, one full-attention layer predicts x_{p+1}; chained on its own
// output for more guesses. Its KV cache must hold every position, so after each feed of the
// target it processes the pairs (h_{p-1}, x_p) of the new positions (catch_up); guesses' own
// pairs are dropped before the next catch-up.
//
// On the CPU its head is pruned (PrunedVocabulary): a guess reads the 248k-token head
// (417 MB at Q6_K for Qwen3.5-35B-A3B) and one layer (~30 MB with 8 experts), so the head is
// ~90% of a guess; the pruned one reads ~60 MB of it.
class MtpDrafter final : public Drafter {
 public:
  static constexpr int64_t kAutoHeadPrefix = ModelDrafter::kAutoHeadPrefix;
  // Fails, naming the file's architecture, when the model has no MTP block. head_prefix as
  // for ModelDrafter.
  MtpDrafter(const Engine& target, int64_t n_ctx, int64_t head_prefix = kAutoHeadPrefix);
  ~MtpDrafter() override;
  bool needs_hidden() const override { return true; }
  void catch_up(const FedContext& fed) override;
  void cut(int64_t n) override;
  void draft(std::span<const text::TokenId> context, int max, std::vector<text::TokenId>& out) override;
  // The block's logits behind the last guess (-inf outside head_rows() when pruned).
  std::span<const float> logits() const { return logits_; }
  int64_t head_prefix() const { return pruned_.prefix(); }
  std::span<const RowRange> head_rows() const { return pruned_.rows(); }
  // pruned_head_prefix for the file's MTP block: the head against itself plus the block's
  // tensors (every expert counted: a bound on what a guess reads).
  static int64_t auto_head_prefix(const Engine& target);

 private:
  // Runs the block on pairs (hidden rows, tokens); logits of the last pair into logits_, its
  // normed output into out_hidden_.
  void step(std::span<const text::TokenId> tokens, const float* hidden);

  const model::Model& model_;
  model::Backends backends_;
  std::unique_ptr<model::SequenceState> cache_;  // the block's KV: one pair per position
  std::unique_ptr<model::Workspace> workspace_;
  int64_t D_;
  int64_t synced_ = 0;              // the cache holds the trunk's pairs for positions 1..synced_
  bool have_last_ = false;
  std::vector<float> last_hidden_;  // the trunk's h at position synced_ (the next pair needs it)
  std::vector<float> logits_, out_hidden_, pairs_;  // reused
  PrunedVocabulary pruned_;
  // The leading context tokens known unchanged since the last guess (cut and a fresh feed
  // lower it; every feed otherwise only appends).
  size_t unchanged_ = 0;
};

// Fails unless the two vocabularies agree token for token (over the ids both have, from 0),
// naming the first id whose text differs.
void check_same_vocabulary(const text::Tokenizer& target, const text::Tokenizer& draft);

struct SpeculativeStats {
  int64_t verify_steps = 0;  // forward passes that checked at least one guess
  int64_t drafted = 0;       // guesses checked
  int64_t accepted = 0;      // guesses kept
  int64_t tokens = 0;        // tokens generated by verify passes (accepted + one each)
  double draft_seconds = 0;  // time spent guessing (the drafter's share of decode)
  int64_t paused_tokens = 0; // tokens decoded one at a time while guessing paused (below)
  double acceptance() const { return drafted > 0 ? static_cast<double>(accepted) / static_cast<double>(drafted) : 0; }
  double tokens_per_step() const {
    return verify_steps > 0 ? static_cast<double>(tokens) / static_cast<double>(verify_steps) : 0;
  }
};

// Guessing pauses while it does not pay: when fewer than `below` of the last `window`
// guesses were kept, the next `tokens` tokens are decoded one at a time (the drafter still
// follows the context), then guessing resumes; each failing window in a row doubles the
// pause (up to 32x), a paying one resets it. A verify pass costs 1.2-1.7x a plain step on a
// CPU (bench/RESULTS.md), so under ~30% acceptance speculation is slower than none; `--spec
// auto` must never make a file decode slower for long. window 0: never pause.
struct PauseRule {
  int window = 32;
  double below = 0.3;
  int tokens = 128;
};

// One sequence's pause state under a PauseRule.
class SpeculationPacer {
 public:
  explicit SpeculationPacer(const PauseRule& rule) : rule_(rule), next_pause_(rule.tokens) {}
  // Called once per token about to be decoded: true while guessing is paused (that token is
  // then decoded alone and counted).
  bool take_paused_token() {
    if (paused_left_ == 0) return false;
    --paused_left_;
    return true;
  }
  // A verify pass checked `drafted` guesses and kept `accepted`.
  void record(int64_t drafted, int64_t accepted);

 private:
  PauseRule rule_;
  int64_t window_drafted_ = 0, window_accepted_ = 0;  // guesses since the last check
  int64_t paused_left_ = 0;                            // tokens still to decode without guessing
  int64_t next_pause_;                                 // doubles while windows keep failing
};

struct Speculation {
  Drafter* drafter = nullptr;
  int draft_max = 16;  // guesses per verify pass at most (--draft-max)
  int draft_min = 0;   // fewer guesses than this: decode one token instead (--draft-min)
  PauseRule pause;
  SpeculativeStats stats;
};

// generate()'s decode loop (generation.h) with guesses checked in batched passes, from the
// logits after the prompt.
void decode_speculatively(Session& session, Generation& generation, Speculation& spec, std::span<float> logits,
                          const std::function<bool(const std::string&)>& on_text);

// --spec: "none", "ngram", "draft" (a draft model, -md), "mtp" (the file's own MTP block), or
// "auto": draft when -md is given, else mtp when the target has an MTP block
// (target_has_mtp; a rejected guess costs a recurrent model no second pass), else none.
enum class SpecMethod { None, Ngram, Draft, Mtp };
SpecMethod parse_spec_method(std::string_view name, bool have_draft_model, bool target_has_mtp);
const char* spec_method_name(SpecMethod m);  // "none", "ngram", "draft", "mtp"

// What a command or the server is asked for (--spec, -md, --draft-max, --draft-min,
// --draft-p-min, --spec-ngram-min/max: llama.cpp's spellings where it has them).
struct SpeculationOptions {
  std::string method = "auto";
  std::string draft_model;
  // 0: by method: 16 for n-gram lookup (guesses are free), 6 for a draft model (with the
  // pruned head, 6 led 4 and 8 in three windows on 2 cores: bench/RESULTS.md), 2 for MTP.
  int draft_max = 0;
  int draft_min = 0;
  float draft_p_min = 0.75f;
  int ngram_min = 2, ngram_max = 4;
  // Whether these may run the model's own MTP block (then the planner places it first).
  bool may_use_mtp() const { return draft_model.empty() && (method == "mtp" || method == "auto"); }
  SpecMethod resolve(const Engine& target) const;
  int draft_max_for(SpecMethod m) const {
    return draft_max > 0 ? draft_max : m == SpecMethod::Ngram ? 16 : m == SpecMethod::Mtp ? 2 : 6;
  }
};

// The draft model `path` opened beside `target` (placed): its thread pool shared, placed in
// what the target left free, for sessions of n_ctx positions.
std::unique_ptr<Engine> open_draft_engine(const Engine& target, const std::string& path, int64_t n_ctx,
                                          std::function<void(uint64_t, uint64_t)> load_progress);

}  // namespace tandem::runtime
