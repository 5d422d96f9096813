// One loaded model, ready to run: the files, tokenizer, chat template, network, the CPU op
// context (thread pool, prepared weights) and the GPU backend its placement asked for.
// Every command that runs a model (run, chat, bench, perplexity, serve) opens it the same
// way and then makes sessions or sequences on it; none of them repeats the set-up chain.
// Forward passes share the backends' scratch and the pool: one runs at a time (the server's
// scheduler thread owns the engine while it serves); the tokenizer and template are
// read-only and may be used from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_ops.h"
#include "gguf/gguf_model_files.h"
#include "model/model.h"
#include "runtime/placement.h"
#include "runtime/session.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace tandem::runtime {

struct EngineOptions {
  std::string model_path;
  int threads = 0;          // 0: default_thread_count()
  // What the placement plans GPU memory for: the KV cache of every sequence together, and
  // the largest micro-batch. 0: the caller calls Engine::place() itself once it knows
  // (e.g. after tokenizing the prompt).
  int64_t plan_ctx = 4096;
  int64_t plan_ubatch = 64;
  model::KvCacheTypes kv;
  PlacementOptions placement;
  std::string chat_template_file;  // empty: the model's own (tokenizer.chat_template)
  bool quiet = false;              // no placement notes on stderr
  bool prepare = true;             // make weights ready for their device before returning
  // Runs on this pool instead of starting its own (a draft model beside its target model:
  // they take turns, one set of threads serves both). `threads` is then the pool's size.
  std::shared_ptr<ThreadPool> shared_pool;
  // Called while the file's pages are read in (done, total bytes); empty: read silently.
  std::function<void(uint64_t, uint64_t)> load_progress;
};

class Engine {
 public:
  // Opens the model (files, tokenizer, template, network) and, when options.plan_ctx > 0,
  // places it.
  explicit Engine(const EngineOptions& options);
  // Starts the CPU pool, plans where each tensor goes and makes weights ready there. Once.
  void place(int64_t plan_ctx, int64_t plan_ubatch);
  // A new CPU pool of n threads (a thread sweep in bench): the CPU op context is made anew,
  // the placement and GPU stay. Sessions and sequences made before must be dropped first.
  void set_threads(int n);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const EngineOptions& options() const { return options_; }
  const gguf::ModelFiles& files() const { return files_; }
  const text::Tokenizer& tokenizer() const { return tokenizer_; }
  const model::Model& model() const { return *model_; }
  const model::HParams& hparams() const { return model_->hparams(); }
  const model::Backends& backends() const;
  cpu::OpContext& cpu_context() { return *ctx_; }
  // The CPU pool, for another engine to share (EngineOptions::shared_pool).
  std::shared_ptr<ThreadPool> shared_pool() const;
  int threads() const;
  bool on_gpu() const { return gpu_ != nullptr; }
  // Whether a forward pass leaves a CPU core free for other work (a grammar's mask, say):
  // layers run on a GPU, or the pool has fewer threads than this process may use.
  bool forward_leaves_a_core_idle() const;
  // End-of-generation tokens (EOS, EOT, <|im_end|>, ...).
  const std::set<text::TokenId>& end_of_generation() const { return eog_; }
  // The chat template (the model's or --template's); fails with a clear message when the
  // model has none and no file was given.
  const text::ChatTemplate& chat_template() const;
  bool has_chat_template() const { return chat_template_.has_value(); }

  // A single-sequence session on this engine's backends.
  std::unique_ptr<Session> new_session(int64_t n_ctx, int64_t n_ubatch) const;
  // Sequences and workspaces for callers that batch several sequences themselves.
  std::unique_ptr<model::SequenceState> new_sequence(int64_t n_ctx) const;
  std::unique_ptr<model::Workspace> new_workspace(int64_t max_tokens) const;
  void forward(model::Workspace& workspace, std::span<const model::SequenceInput> batch) const;

  // Text the tokenizer turns into tokens, checked against the model's embedding table.
  std::vector<text::TokenId> tokenize(std::string_view text, const text::EncodeOptions& options) const;

 private:
  EngineOptions options_;
  gguf::ModelFiles files_;
  text::Tokenizer tokenizer_;
  std::optional<text::ChatTemplate> chat_template_;
  std::string chat_template_error_;
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<cpu::OpContext> ctx_;
  std::unique_ptr<cpu::CpuBackend> cpu_;
  std::unique_ptr<Backend> gpu_;
  model::Backends backends_;
  std::set<text::TokenId> eog_;
};

}  // namespace tandem::runtime
