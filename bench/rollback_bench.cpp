// The cost of a speculative verify pass plus cutting rejected guesses back, against a plain
// decode step, on one model: for k = 1..4 guesses (k+1 positions a pass), with a rejection
// at the first guess (the pending token kept: the worst case) and with every guess kept.
//   rollback: Session::verify + Session::rollback (the state ping-pongs on its device; the
//             pass leaves the state after its first token in the second buffer, so a
//             rejection at the first guess re-runs nothing, one later re-runs the recurrence
//             over the kept recorded positions after the first)
//   re-feed:  what decode_speculatively did before rollback existed, through the same
//             public calls: the recurrent state saved to host memory before the pass, and on
//             a rejection restored and the kept tokens fed again (a second forward pass)
// Per-token costs are medians of --reps timed iterations (each after --warmup untimed
// ones), each row's three steps alternating; weights are whatever the file holds (random weights say nothing about how often
// guesses are accepted, only about what a pass costs). A file with an MTP block also gets the
// drafter's own cost per guess, with the whole head and the pruned one. A tool, not a test.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/speculative.h"

namespace {

using Clock = std::chrono::steady_clock;
using tandem::runtime::MtpDrafter;
using tandem::runtime::Session;

double median_ms(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs the steps in turn, reps times after warmup untimed rounds, rewinding the session to
// `base` tokens whenever the context would fill; returns the median milliseconds of each.
// Alternating them puts the machine's drift on all alike, so their ratios hold even where
// single figures wander.
std::vector<double> time_steps(Session& s, const std::vector<int32_t>& base, int warmup, int reps,
                               const std::vector<std::function<void()>>& steps) {
  std::vector<std::vector<double>> ms(steps.size());
  for (int i = 0; i < warmup + reps; ++i) {
    for (size_t j = 0; j < steps.size(); ++j) {
      if (s.n_past() + 16 > s.n_ctx()) {
        s.reset();
        s.feed(base);
      }
      const auto t0 = Clock::now();
      steps[j]();
      const double t = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (i >= warmup) ms[j].push_back(t);
    }
  }
  std::vector<double> medians;
  for (auto& v : ms) medians.push_back(median_ms(std::move(v)));
  return medians;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Speculative verify + rollback vs verify + re-feed vs a plain decode step");
  std::string model;
  int threads = 0, reps = 30, warmup = 5, prompt_tokens = 64;
  app.add_option("-m,--model", model, "GGUF model")->required();
  app.add_option("-t,--threads", threads, "CPU threads (0: default)")->capture_default_str();
  app.add_option("-r,--reps", reps, "Timed iterations per figure")->capture_default_str();
  app.add_option("--warmup", warmup, "Untimed iterations first")->capture_default_str();
  app.add_option("-p,--prompt", prompt_tokens, "Context tokens before the measured steps")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  tandem::runtime::EngineOptions o;
  o.model_path = model;
  o.threads = threads;
  o.plan_ctx = 1024;
  o.quiet = true;
  tandem::runtime::Engine engine(o);
  auto session = engine.new_session(1024, 64);
  Session& s = *session;
  std::vector<int32_t> base;
  for (int i = 0; i < prompt_tokens; ++i) base.push_back(100 + (i * 37) % 1000);
  s.feed(base);
  s.prepare_rollback(5);
  const bool recurrent = s.state().has_recurrent_state();
  std::vector<uint8_t> saved(recurrent ? s.state().recurrent_state_bytes() : 0);

  const int32_t token = 321;
  const auto plain_step = [&] { s.feed(std::span<const int32_t>(&token, 1)); };
  std::printf("model %s, %s state, threads %d; each row's passes alternate with plain decode steps\n\n",
              model.c_str(), recurrent ? "recurrent" : "no recurrent",
              static_cast<int>(engine.cpu_context().pool().size()));
  std::printf("| k | kept | plain ms | verify+rollback ms | x plain | verify+re-feed ms | x plain |\n");
  std::printf("|---|------|----------|--------------------|---------|-------------------|---------|\n");
  for (int k = 1; k <= 4; ++k) {
    std::vector<int32_t> batch(static_cast<size_t>(k + 1));
    for (int i = 0; i <= k; ++i) batch[static_cast<size_t>(i)] = 200 + 11 * i;
    for (const int keep : {1, k + 1}) {
      const auto rollback_step = [&] {
        const int64_t before = s.n_past();
        s.verify(batch);
        s.rollback(before + keep);
      };
      const auto refeed_step = [&] {
        const int64_t before = s.n_past();
        if (recurrent) s.state().save_recurrent_state(saved.data());
        s.feed_all_logits(batch);
        if (keep < k + 1) {
          if (recurrent) {
            s.truncate(before, saved.data());
            s.feed(std::span<const int32_t>(batch.data(), static_cast<size_t>(keep)));
          } else {
            s.truncate(before + keep);
          }
        }
      };
      const std::vector<double> ms = time_steps(s, base, warmup, reps, {plain_step, rollback_step, refeed_step});
      std::printf("| %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", k, keep == 1 ? "1 (reject at 0)" : "all", ms[0],
                  ms[1], ms[1] / ms[0], ms[2], ms[2] / ms[0]);
    }
  }
  if (!engine.model().has_mtp()) return 0;

  // The MTP drafter's own cost: one guess (the block and the head), with the whole head and
  // with the pruned one (PrunedVocabulary: kDraftHeadPrefix ids and the context's runs),
  // alternating with plain steps. Its own session holds the context it guesses after.
  auto ds = engine.new_session(1024, 64);
  ds->keep_hidden(true);
  ds->feed(base);
  MtpDrafter whole(engine, 1024, 0), pruned(engine, 1024, tandem::runtime::kDraftHeadPrefix);
  whole.catch_up(ds->fed_context());
  pruned.catch_up(ds->fed_context());
  std::vector<int32_t> context(base);
  context.push_back(token);
  std::vector<int32_t> guesses;
  const auto guess = [&](MtpDrafter& d) {
    return [&] {
      d.draft(context, 1, guesses);
      if (guesses.size() != 1) tandem::fail("the MTP drafter made no guess");
    };
  };
  const std::vector<double> ms = time_steps(s, base, warmup, reps, {plain_step, guess(whole), guess(pruned)});
  int64_t rows = 0;
  for (const tandem::RowRange& r : pruned.head_rows()) rows += r.end - r.begin;
  std::printf("\nMTP guess (one step of the block and the head; the pruned head computes %lld of %lld ids)\n\n",
              static_cast<long long>(rows), static_cast<long long>(engine.hparams().n_vocab));
  std::printf("| plain ms | guess, whole head ms | x plain | guess, pruned head ms | x plain |\n");
  std::printf("|----------|----------------------|---------|-----------------------|---------|\n");
  std::printf("| %.2f | %.2f | %.2f | %.2f | %.2f |\n", ms[0], ms[1], ms[1] / ms[0], ms[2], ms[2] / ms[0]);
  return 0;
}
