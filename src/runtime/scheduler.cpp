#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace tandem::runtime {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void observe(uint64_t* counts, double& sum, uint64_t& n, double v) {
  size_t b = 0;
  while (b < SchedulerStats::kBucketCount && v > SchedulerStats::kBuckets[b]) ++b;
  ++counts[b];
  sum += v;
  ++n;
}

}  // namespace

void Job::push(Event e) {
  {
    std::lock_guard<std::mutex> lock(m_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

void Job::finish(FinishReason r, std::string error, bool request_at_fault) {
  {
    std::lock_guard<std::mutex> lock(m_);
    if (finished_) return;
    finished_ = true;
    reason_ = r;
    error_ = std::move(error);
    request_at_fault_ = request_at_fault;
  }
  cv_.notify_all();
}

bool Job::wait(std::vector<Event>& out, int timeout_ms) {
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return finished_ || !events_.empty(); });
  while (!events_.empty()) {
    out.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return finished_;
}

Scheduler::Scheduler(Engine& engine, SchedulerOptions options) : engine_(engine), options_(options) {
  if (options_.n_slots < 1 || options_.n_slots > 256) fail("-np must be 1..256 (got {})", options_.n_slots);
  if (options_.slot_ctx < 16) fail("the context per slot ({}) is too small", options_.slot_ctx);
  options_.step_tokens = std::max<int64_t>(options_.step_tokens, options_.n_slots);
  slots_.resize(static_cast<size_t>(options_.n_slots));
  for (Slot& s : slots_) s.seq = engine_.new_sequence(options_.slot_ctx);
  if (options_.spec_draft_max < 0 || options_.spec_draft_max > 64) {
    fail("--draft-max must be 0..64 (got {})", options_.spec_draft_max);
  }
  if (options_.spec_draft_max > 0 && options_.spec != SpecMethod::None) {
    speculate_ = true;
    const auto D = static_cast<size_t>(engine_.hparams().n_embd);
    for (Slot& s : slots_) {
      // A recurrent state drops rejected guesses by rollback (model.h): each slot's second
      // buffers and records are made now, once; so is every drafter.
      s.seq->prepare_rollback(1 + options_.spec_draft_max);
      s.drafter = make_slot_drafter();
      // Rows of the longest feed: a prompt chunk of the whole step, or a verify pass.
      if (s.drafter->needs_hidden()) {
        s.hidden.resize(static_cast<size_t>(options_.step_tokens + options_.n_slots + options_.spec_draft_max) * D);
      }
    }
    rows_per_slot_ = 1 + static_cast<size_t>(options_.spec_draft_max);
  }
  // Guesses come out of the step's budget, so the decode overshoot stays one per slot.
  workspace_ = engine_.new_workspace(options_.step_tokens + options_.n_slots);
  logits_.resize(static_cast<size_t>(options_.n_slots) * rows_per_slot_ *
                 static_cast<size_t>(engine_.hparams().n_vocab));
  stats_.slots = options_.n_slots;
  thread_ = std::thread([this] { loop(); });
}

std::unique_ptr<Drafter> Scheduler::make_slot_drafter() {
  if (options_.make_drafter) {
    std::unique_ptr<Drafter> d = options_.make_drafter();
    if (!d) fail("speculation: make_drafter gave no drafter");
    return d;
  }
  switch (options_.spec) {
    case SpecMethod::Ngram:
      return std::make_unique<NgramDrafter>(options_.spec_ngram_min, options_.spec_ngram_max);
    case SpecMethod::Mtp:
      return std::make_unique<MtpDrafter>(engine_, options_.slot_ctx);
    case SpecMethod::Draft:
      if (options_.draft_engine == nullptr) fail("speculation with a draft model: no draft model given");
      return std::make_unique<ModelDrafter>(*options_.draft_engine, engine_.tokenizer(), engine_.hparams().n_vocab,
                                            options_.slot_ctx, options_.draft_p_min);
    case SpecMethod::None:
      break;
  }
  fail("speculation: no method");
}

Scheduler::~Scheduler() {
  shutdown();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::shutdown() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stopping_ = true;
  }
  cv_.notify_all();
}

std::shared_ptr<Job> Scheduler::submit(std::vector<text::TokenId> prompt, GenerationParams params) {
  if (prompt.empty()) fail("the prompt is empty");
  if (static_cast<int64_t>(prompt.size()) >= options_.slot_ctx) {
    fail("the prompt has {} tokens; the context per slot is {} (raise -c or lower -np)", prompt.size(),
         options_.slot_ctx);
  }
  auto job = std::make_shared<Job>(std::move(prompt), std::move(params));
  job->queue_s_ = now_seconds();  // enqueue time until assigned
  {
    std::lock_guard<std::mutex> lock(m_);
    if (stopping_) throw QueueFull("the server is shutting down");
    // Requests not yet in a slot beyond the free slots are what waits. (Slots belong to the
    // scheduler's thread; their count is read from the stats it keeps under this lock.)
    const int busy = stats_.slots_busy;
    if (static_cast<int>(queue_.size()) >= options_.queue_max + (options_.n_slots - busy)) {
      ++stats_.requests_rejected;
      throw QueueFull(fmt::format("all {} slots are busy and {} requests are waiting", options_.n_slots, queue_.size()));
    }
    queue_.push_back(job);
    ++stats_.requests_total;
    stats_.queued = static_cast<int>(queue_.size());
  }
  cv_.notify_all();
  return job;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(m_);
  return stats_;
}

size_t Scheduler::shared_prefix(const Slot& slot, const std::vector<text::TokenId>& prompt) const {
  const size_t n = std::min(slot.cached.size(), prompt.size());
  size_t i = 0;
  while (i < n && slot.cached[i] == prompt[i]) ++i;
  return i;
}

// Cuts the slot back to what it shares with `prompt` (at least one prompt token is always
// processed again, for its logits).
void Scheduler::reuse_prefix(Slot& slot, const std::vector<text::TokenId>& prompt) {
  model::SequenceState& seq = *slot.seq;
  const size_t keep = std::min(shared_prefix(slot, prompt), prompt.size() - 1);
  if (!seq.has_recurrent_state()) {
    seq.n_past = static_cast<int64_t>(keep);
    slot.cached.resize(keep);
    return;
  }
  if (keep == slot.cached.size()) return;  // the recurrent state is exactly at the end
  // The newest checkpoint at or before `keep`.
  auto best = slot.checkpoints.end();
  for (auto it = slot.checkpoints.begin(); it != slot.checkpoints.end(); ++it) {
    if (it->pos <= static_cast<int64_t>(keep) && (best == slot.checkpoints.end() || it->pos > best->pos)) best = it;
  }
  if (best == slot.checkpoints.end()) {
    seq.clear();
    slot.cached.clear();
  } else {
    seq.load_recurrent_state(best->bytes.data());
    seq.n_past = best->pos;
    slot.cached.resize(static_cast<size_t>(best->pos));
    best->last_used = ++clock_;
  }
  // Checkpoints past the new end describe tokens that are gone.
  slot.checkpoints.remove_if([&](const Checkpoint& c) { return c.pos > seq.n_past; });
}

void Scheduler::assign(Slot& slot, std::shared_ptr<Job> job) {
  const double t = now_seconds();
  job->queue_s_ = t - job->queue_s_;
  reuse_prefix(slot, job->prompt_);
  if (slot.drafter) slot.drafter->cut(static_cast<int64_t>(slot.cached.size()));
  slot.pacer = SpeculationPacer(options_.spec_pause);
  slot.prompt_at = slot.cached.size();
  job->cached_ = static_cast<int64_t>(slot.prompt_at);
  const auto n = static_cast<int64_t>(job->prompt_.size());
  slot.checkpoint_plan.clear();
  slot.next_checkpoint = 0;
  if (slot.seq->has_recurrent_state()) {
    // Message starts (control tokens: the template's turn markers), the last few of them,
    // then a few tokens before the end; only positions still to be processed.
    const text::Vocab& vocab = engine_.tokenizer().vocab();
    const auto first = static_cast<int64_t>(slot.prompt_at);
    const int64_t end_at = n - options_.checkpoint_before_end;
    for (int64_t p = n - 1; p > first && static_cast<int>(slot.checkpoint_plan.size()) < options_.message_checkpoints; --p) {
      if (p < end_at && vocab.is_control(job->prompt_[static_cast<size_t>(p)])) slot.checkpoint_plan.push_back(p);
    }
    std::reverse(slot.checkpoint_plan.begin(), slot.checkpoint_plan.end());
    if (end_at > first) slot.checkpoint_plan.push_back(end_at);
  }
  job->params_.prefetch_mask = engine_.forward_leaves_a_core_idle();
  slot.gen = std::make_unique<Generation>(engine_.tokenizer(), engine_.end_of_generation(), job->params_,
                                          engine_.hparams().n_vocab);
  slot.gen->accept_prompt(job->prompt_);
  slot.next_token = -1;
  slot.t_start = t;
  slot.t_first = 0;
  slot.last_used = ++clock_;
  slot.job = std::move(job);
  std::lock_guard<std::mutex> lock(m_);
  ++stats_.slots_busy;
}

void Scheduler::take_checkpoint(Slot& slot) {
  Checkpoint c;
  c.pos = slot.seq->n_past;
  c.bytes.resize(slot.seq->recurrent_state_bytes());
  slot.seq->save_recurrent_state(c.bytes.data());
  c.last_used = ++clock_;
  slot.checkpoints.remove_if([&](const Checkpoint& o) { return o.pos == c.pos; });
  slot.checkpoints.push_back(std::move(c));
  evict_checkpoints();
}

void Scheduler::evict_checkpoints() {
  for (;;) {
    uint64_t total = 0, count = 0;
    Slot* oldest_slot = nullptr;
    std::list<Checkpoint>::iterator oldest;
    for (Slot& s : slots_) {
      for (auto it = s.checkpoints.begin(); it != s.checkpoints.end(); ++it) {
        total += it->bytes.size();
        ++count;
        if (oldest_slot == nullptr || it->last_used < oldest->last_used) {
          oldest_slot = &s;
          oldest = it;
        }
      }
    }
    if (total <= options_.cache_ram_bytes || oldest_slot == nullptr) {
      std::lock_guard<std::mutex> lock(m_);
      stats_.checkpoints = count;
      stats_.checkpoint_bytes = total;
      return;
    }
    oldest_slot->checkpoints.erase(oldest);
  }
}

void Scheduler::end_job(Slot& slot, FinishReason r, std::string error, bool request_at_fault) {
  Job& job = *slot.job;
  const double t = now_seconds();
  job.completion_ = slot.gen ? slot.gen->generated() : 0;
  if (slot.t_first > 0) {
    job.prompt_s_ = slot.t_first - slot.t_start;
    job.gen_s_ = t - slot.t_first;
  }
  {
    std::lock_guard<std::mutex> lock(m_);
    stats_.prompt_tokens_total += static_cast<uint64_t>(job.prompt_tokens());
    stats_.prompt_tokens_cached_total += static_cast<uint64_t>(job.cached_);
    stats_.generated_tokens_total += static_cast<uint64_t>(job.completion_);
    --stats_.slots_busy;
    if (job.completion_ > 1 && slot.t_first > 0) {
      observe(stats_.tpot_counts, stats_.tpot_sum, stats_.tpot_n, job.gen_s_ / static_cast<double>(job.completion_ - 1));
    }
  }
  job.finish(r, std::move(error), request_at_fault);
  slot.job.reset();
  slot.gen.reset();
  slot.last_used = ++clock_;
}

void Scheduler::sample(Slot& slot, std::span<float> logits) {
  Generation& gen = *slot.gen;
  const int64_t room = slot.seq->n_ctx - slot.seq->n_past;
  GenerationStep step;
  try {
    step = gen.next(logits, room);
  } catch (const Error& e) {
    // Sampling fails only on what the request brought (a grammar too ambiguous to match):
    // that request ends with the message; the other slots go on.
    end_job(slot, FinishReason::Cancelled, e.what(), true);
    return;
  }
  if (slot.t_first == 0) {
    slot.t_first = now_seconds();
    std::lock_guard<std::mutex> lock(m_);
    observe(stats_.ttft_counts, stats_.ttft_sum, stats_.ttft_n, slot.t_first - slot.t_start + slot.job->queue_s_);
  }
  slot.job->push(Job::Event{std::move(step.text), step.token, std::move(step.top)});
  if (gen.done()) {
    end_job(slot, gen.reason());
  } else {
    slot.next_token = step.token;
  }
}

void Scheduler::follow(Slot& slot, int64_t fed) {
  if (!slot.drafter) return;
  FedContext c;
  c.tokens = slot.cached;
  c.hidden = slot.hidden;
  c.hidden_from = static_cast<int64_t>(slot.cached.size()) - fed;
  slot.drafter->catch_up(c);
}

void Scheduler::take_decode_step(Slot& slot, float* logits) {
  const auto V = static_cast<size_t>(engine_.hparams().n_vocab);
  const size_t guesses = slot.fed.size() - 1;
  // The counts go in before the sample that may end the job: a client that reads /metrics
  // after its answer sees its guesses counted.
  if (guesses > 0) {
    slot.job->drafted_ += static_cast<int64_t>(guesses);
    std::lock_guard<std::mutex> lock(m_);
    stats_.spec_drafted_total += guesses;
    ++stats_.spec_verify_steps_total;
  }
  size_t kept = 0;  // fed tokens the context keeps: next_token, then the guesses sampled
  for (size_t i = 0; i < slot.fed.size(); ++i) {
    slot.cached.push_back(slot.fed[i]);
    ++kept;
    slot.next_token = -1;
    sample(slot, std::span<float>(logits + i * V, V));
    if (!slot.job) break;  // generation ended here
    if (i + 1 < slot.fed.size() && slot.next_token == slot.fed[i + 1]) {  // the guess was right
      ++slot.job->accepted_;
      std::lock_guard<std::mutex> lock(m_);
      ++stats_.spec_accepted_total;
      continue;
    }
    break;
  }
  if (guesses > 0) {
    // Rejected guesses are dropped (KV rows by n_past, a recurrent state rebuilt) before
    // anything else runs: no checkpoint ever sees a state mid-speculation.
    slot.seq->rollback(static_cast<int64_t>(kept));
    slot.pacer.record(static_cast<int64_t>(guesses), static_cast<int64_t>(kept) - 1);
  }
  follow(slot, static_cast<int64_t>(kept));
}

void Scheduler::loop() {
  const auto V = static_cast<size_t>(engine_.hparams().n_vocab);
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(m_);
      auto has_work = [&] {
        if (stopping_) return true;
        for (const Slot& s : slots_) {
          if (s.job) return true;
        }
        return !queue_.empty();
      };
      cv_.wait(lock, has_work);
      if (stopping_) {
        for (auto& job : queue_) job->finish(FinishReason::Cancelled, "the server is shutting down");
        queue_.clear();
        lock.unlock();
        for (Slot& s : slots_) {
          if (s.job) end_job(s, FinishReason::Cancelled);
        }
        return;
      }
      // Queued requests go to the free slot sharing the longest prefix (then the least recently used).
      while (!queue_.empty()) {
        std::shared_ptr<Job> job = queue_.front();
        if (job->cancelled()) {
          queue_.pop_front();
          job->finish(FinishReason::Cancelled);
          continue;
        }
        Slot* best = nullptr;
        size_t best_prefix = 0;
        for (Slot& s : slots_) {
          if (s.job) continue;
          const size_t p = shared_prefix(s, job->prompt_);
          if (best == nullptr || p > best_prefix || (p == best_prefix && s.last_used < best->last_used)) {
            best = &s;
            best_prefix = p;
          }
        }
        if (best == nullptr) break;
        queue_.pop_front();
        lock.unlock();
        assign(*best, std::move(job));
        lock.lock();
      }
      stats_.queued = static_cast<int>(queue_.size());
    }

    // Cancelled (client gone): free the slot before spending a step on it.
    for (Slot& s : slots_) {
      if (s.job && s.job->cancelled()) end_job(s, FinishReason::Cancelled);
    }

    // One step: a token for every generating slot, then prompt chunks within the budget.
    batch_.clear();
    batch_slots_.clear();
    batch_decode_.clear();
    int64_t budget = options_.step_tokens;
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (!s.job || s.next_token < 0) continue;
      s.fed.assign(1, s.next_token);
      if (speculate_) {
        const int64_t room = s.seq->n_ctx - s.seq->n_past;
        const int64_t max = std::min<int64_t>({options_.spec_draft_max, room - 1, budget - 1});
        if (s.pacer.take_paused_token()) {
          std::lock_guard<std::mutex> lock(m_);
          ++stats_.spec_paused_tokens_total;
        } else if (max >= std::max(1, options_.spec_draft_min)) {
          context_.assign(s.cached.begin(), s.cached.end());
          context_.push_back(s.next_token);
          try {
            s.drafter->draft(context_, static_cast<int>(max), guesses_);
          } catch (const std::exception&) {
            guesses_.clear();  // a drafter that fails only costs this step its guesses
          }
          if (static_cast<int>(guesses_.size()) >= options_.spec_draft_min) {
            s.fed.insert(s.fed.end(), guesses_.begin(), guesses_.end());
          }
        }
      }
      model::SequenceInput in;
      in.state = s.seq.get();
      in.tokens = s.fed;
      in.logits = logits_.data() + i * rows_per_slot_ * V;
      in.all_logits = s.fed.size() > 1;
      in.verify = s.fed.size() > 1;
      if (!s.hidden.empty()) in.hidden = s.hidden.data();
      batch_.push_back(in);
      batch_slots_.push_back(&s);
      batch_decode_.push_back(true);
      budget -= static_cast<int64_t>(s.fed.size());
    }
    for (size_t i = 0; i < slots_.size() && budget > 0; ++i) {
      Slot& s = slots_[i];
      if (!s.job || s.next_token >= 0) continue;
      const std::vector<text::TokenId>& prompt = s.job->prompt_;
      int64_t n = std::min<int64_t>(budget, static_cast<int64_t>(prompt.size() - s.prompt_at));
      if (s.next_checkpoint < s.checkpoint_plan.size()) {
        n = std::min<int64_t>(n, s.checkpoint_plan[s.next_checkpoint] - static_cast<int64_t>(s.prompt_at));
      }
      if (n <= 0) continue;
      model::SequenceInput in;
      in.state = s.seq.get();
      in.tokens = std::span<const int32_t>(prompt.data() + s.prompt_at, static_cast<size_t>(n));
      in.logits = logits_.data() + i * rows_per_slot_ * V;
      if (!s.hidden.empty()) in.hidden = s.hidden.data();
      batch_.push_back(in);
      batch_slots_.push_back(&s);
      batch_decode_.push_back(false);
      budget -= n;
    }
    if (batch_.empty()) continue;

    for (Slot* s : batch_slots_) s->gen->prefetch();  // grammar masks while the batch runs
    const double t0 = now_seconds();
    try {
      engine_.forward(*workspace_, batch_);
    } catch (const std::exception& e) {
      // Nothing was changed for any sequence of the batch: fail their jobs, keep serving.
      for (Slot* s : batch_slots_) {
        s->seq->clear();
        s->cached.clear();
        s->checkpoints.clear();
        if (s->drafter) s->drafter->cut(0);
        end_job(*s, FinishReason::Cancelled, e.what());
      }
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      stats_.busy_seconds += now_seconds() - t0;
    }
    for (size_t b = 0; b < batch_.size(); ++b) {
      Slot& s = *batch_slots_[b];
      const size_t slot_index = static_cast<size_t>(&s - slots_.data());
      std::span<float> logits(logits_.data() + slot_index * rows_per_slot_ * V, V);
      if (batch_decode_[b]) {
        take_decode_step(s, logits.data());
        continue;
      }
      const std::vector<text::TokenId>& prompt = s.job->prompt_;
      s.cached.insert(s.cached.end(), batch_[b].tokens.begin(), batch_[b].tokens.end());
      s.prompt_at += batch_[b].tokens.size();
      follow(s, static_cast<int64_t>(batch_[b].tokens.size()));
      if (s.next_checkpoint < s.checkpoint_plan.size() &&
          static_cast<int64_t>(s.prompt_at) == s.checkpoint_plan[s.next_checkpoint]) {
        take_checkpoint(s);
        ++s.next_checkpoint;
      }
      if (s.prompt_at == prompt.size()) sample(s, logits);
    }
  }
}

}  // namespace tandem::runtime
