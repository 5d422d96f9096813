// Continuous batching over N slots, each a sequence of one engine. One thread steps the
// engine: every step decodes one token for each generating slot together (the weights are
// read once for all of them) plus a chunk of pending prompts under a token budget, so a
// long prompt never holds other streams up for more than one chunk. Requests beyond the
// slots wait in a bounded queue.
//
// Prompt cache: a slot keeps the tokens its sequence holds; a request goes to the free
// slot sharing the longest prefix with its prompt, and only the rest is processed. For a
// KV cache the state is cut back to the shared prefix. Recurrent state (Qwen3.5) cannot be
// cut back: the slot keeps copies of it taken at the start of each message (before each
// control token of the rendered conversation: <|im_start|> and its kin) and a few tokens
// before the end of each prompt (within --cache-ram, least recently used dropped first),
// and restores the newest one at or before the point where the new prompt parts from the
// old: an edited last message or a changed reply costs that message, not the conversation.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine.h"
#include "runtime/generation.h"
#include "runtime/speculative.h"

namespace tandem::runtime {

struct SchedulerOptions {
  int n_slots = 4;
  int64_t slot_ctx = 4096;        // positions per slot
  int64_t step_tokens = 256;      // most tokens one forward step carries (decode + prompt chunks)
  int queue_max = 64;             // requests waiting beyond the slots
  uint64_t cache_ram_bytes = 2ull << 30;  // recurrent-state checkpoints, all slots together
  int checkpoint_before_end = 4;  // where the end-of-prompt checkpoint goes
  int message_checkpoints = 8;    // also at the starts of the last this-many messages
  // Speculation (spec_draft_max 0: off): guesses checked per slot and step at most, made by
  // `spec`: Ngram, lookup in the slot's own context; Mtp, the file's MTP block (a drafter
  // and a block cache per slot, following the slot's hidden states); Draft, `draft_engine`,
  // a small model with the same vocabulary (a draft session per slot). Recurrent models
  // too: rejected guesses are rolled back (SequenceState::rollback). Each slot pauses its
  // guessing while it does not pay (spec_pause).
  int spec_draft_max = 0;
  SpecMethod spec = SpecMethod::Ngram;
  int spec_draft_min = 0;  // fewer guesses than this: the slot decodes one token instead
  int spec_ngram_min = 2, spec_ngram_max = 4;
  Engine* draft_engine = nullptr;
  float draft_p_min = 0.75f;
  PauseRule spec_pause;
  // Makes each slot's drafter instead (an embedder's own guesser, or one that wraps the
  // method's to watch it); called once per slot.
  std::function<std::unique_ptr<Drafter>()> make_drafter;
};

// One request's life, shared by the thread that submitted it and the scheduler.
class Job {
 public:
  struct Event {
    std::string text;
    text::TokenId token = -1;
    std::vector<TokenLogprob> top;
  };
  Job(std::vector<text::TokenId> prompt, GenerationParams params)
      : prompt_(std::move(prompt)), params_(std::move(params)) {}

  // Waits up to `timeout_ms` for events; moves them into `out`. Returns true once the job
  // has finished and every event was taken.
  bool wait(std::vector<Event>& out, int timeout_ms);
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Valid once wait() returned true.
  FinishReason reason() const { return reason_; }
  const std::string& error() const { return error_; }
  // Whether the error lies in the request itself (its grammar could not be matched, say):
  // a 400 rather than a 500.
  bool request_at_fault() const { return request_at_fault_; }
  int64_t prompt_tokens() const { return static_cast<int64_t>(prompt_.size()); }
  int64_t cached_tokens() const { return cached_; }
  int64_t completion_tokens() const { return completion_; }
  int64_t drafted_tokens() const { return drafted_; }    // speculation: guesses checked
  int64_t accepted_tokens() const { return accepted_; }  //   and kept
  double queue_seconds() const { return queue_s_; }
  double prompt_seconds() const { return prompt_s_; }
  double generation_seconds() const { return gen_s_; }

 private:
  friend class Scheduler;
  void push(Event e);
  void finish(FinishReason r, std::string error = {}, bool request_at_fault = false);

  std::vector<text::TokenId> prompt_;
  GenerationParams params_;
  std::atomic<bool> cancelled_{false};
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  bool finished_ = false;
  FinishReason reason_ = FinishReason::None;
  std::string error_;
  bool request_at_fault_ = false;
  int64_t cached_ = 0, completion_ = 0, drafted_ = 0, accepted_ = 0;
  double queue_s_ = 0, prompt_s_ = 0, gen_s_ = 0;
};

// What /metrics reports (a consistent copy).
struct SchedulerStats {
  int slots = 0, slots_busy = 0, queued = 0;
  uint64_t requests_total = 0, requests_rejected = 0, prompt_tokens_total = 0, prompt_tokens_cached_total = 0,
           generated_tokens_total = 0, checkpoints = 0, checkpoint_bytes = 0, spec_drafted_total = 0,
           spec_accepted_total = 0, spec_verify_steps_total = 0, spec_paused_tokens_total = 0;
  double busy_seconds = 0;
  // Latency histograms (seconds): time to first token, time per output token.
  static constexpr double kBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  static constexpr size_t kBucketCount = sizeof(kBuckets) / sizeof(kBuckets[0]);
  uint64_t ttft_counts[kBucketCount + 1] = {}, tpot_counts[kBucketCount + 1] = {};
  double ttft_sum = 0, tpot_sum = 0;
  uint64_t ttft_n = 0, tpot_n = 0;
};

class QueueFull : public Error {
 public:
  using Error::Error;
};

class Scheduler {
 public:
  Scheduler(Engine& engine, SchedulerOptions options);
  ~Scheduler();  // cancels what runs and joins the thread

  // Queues a request; throws QueueFull when the queue is at its limit, Error when the prompt
  // cannot fit a slot.
  std::shared_ptr<Job> submit(std::vector<text::TokenId> prompt, GenerationParams params);
  // Ends every running and queued job (Cancelled) and stops taking new ones.
  void shutdown();
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Checkpoint {
    int64_t pos = 0;
    std::vector<uint8_t> bytes;
    uint64_t last_used = 0;
  };
  struct Slot {
    std::unique_ptr<model::SequenceState> seq;
    std::vector<text::TokenId> cached;  // tokens the sequence holds (cached.size() == seq->n_past)
    std::list<Checkpoint> checkpoints;  // recurrent models only, by position
    std::shared_ptr<Job> job;
    std::unique_ptr<Generation> gen;
    size_t prompt_at = 0;               // prompt tokens already in the sequence
    std::vector<int64_t> checkpoint_plan;  // prompt positions to checkpoint at, ascending
    size_t next_checkpoint = 0;            // first entry of checkpoint_plan not reached
    text::TokenId next_token = -1;      // sampled, to be fed
    std::vector<text::TokenId> fed;     // this step's decode input: next_token, then guesses
    std::unique_ptr<Drafter> drafter;   // speculation: this slot's guesser
    SpeculationPacer pacer{PauseRule{}};
    std::vector<float> hidden;          // drafters that read hidden states: the last feed's rows
    uint64_t last_used = 0;
    double t_start = 0, t_first = 0;
  };

  void loop();
  std::unique_ptr<Drafter> make_slot_drafter();
  void assign(Slot& slot, std::shared_ptr<Job> job);
  void reuse_prefix(Slot& slot, const std::vector<text::TokenId>& prompt);
  void take_checkpoint(Slot& slot);
  void end_job(Slot& slot, FinishReason r, std::string error = {}, bool request_at_fault = false);
  void sample(Slot& slot, std::span<float> logits);
  // After a decode step: samples each fed position in turn, keeps the guesses sampled.
  void take_decode_step(Slot& slot, float* logits);
  // The slot's drafter sees what its sequence holds after a feed of `fed` tokens.
  void follow(Slot& slot, int64_t fed);
  size_t shared_prefix(const Slot& slot, const std::vector<text::TokenId>& prompt) const;
  void evict_checkpoints();

  Engine& engine_;
  SchedulerOptions options_;
  std::vector<Slot> slots_;
  std::unique_ptr<model::Workspace> workspace_;
  std::vector<float> logits_;  // [n_slots][rows_per_slot_][n_vocab]
  size_t rows_per_slot_ = 1;   // 1 + guesses per step
  bool speculate_ = false;
  std::vector<text::TokenId> context_, guesses_;  // drafting scratch
  std::vector<model::SequenceInput> batch_;
  std::vector<Slot*> batch_slots_;
  std::vector<bool> batch_decode_;

  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  SchedulerStats stats_;
  uint64_t clock_ = 0;  // LRU ticks
  std::thread thread_;
};

}  // namespace tandem::runtime
