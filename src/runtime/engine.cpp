#include "runtime/engine.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/thread_pool.h"
#include "text/generation_stop.h"

namespace tandem::runtime {

Engine::Engine(const EngineOptions& options)
    : options_(options),
      files_(gguf::ModelFiles::open(options.model_path)),
      tokenizer_(text::Tokenizer::from_gguf(files_.primary())) {
  files_.prefault(options_.load_progress ? options_.load_progress : std::function<void(uint64_t, uint64_t)>{});
  // A missing or broken template matters only to chat callers: remember why and say it then.
  try {
    chat_template_ = options_.chat_template_file.empty()
                         ? text::ChatTemplate::from_gguf(files_.primary())
                         : text::ChatTemplate::from_file(options_.chat_template_file, &files_.primary());
  } catch (const Error& e) {
    if (!options_.chat_template_file.empty()) throw;  // asked for by name: an error now
    chat_template_error_ = e.what();
  }
  model_ = model::load_model(files_);
  if (!options_.quiet) {
    for (const std::string& name : model_->unused_tensors()) {
      fmt::print(stderr, "note: tensor '{}' is not used by this architecture\n", name);
    }
  }
  eog_ = text::end_of_generation_tokens(tokenizer_.vocab(), files_.primary());
  if (options_.plan_ctx > 0) place(options_.plan_ctx, options_.plan_ubatch);
}

void Engine::place(int64_t plan_ctx, int64_t plan_ubatch) {
  if (ctx_) fail("engine: the model is already placed");
  options_.plan_ctx = plan_ctx;
  options_.plan_ubatch = plan_ubatch;
  if (options_.shared_pool) {
    ctx_ = std::make_unique<cpu::OpContext>(options_.shared_pool, model_->max_row());
  } else {
    const int threads = options_.threads > 0 ? options_.threads : default_thread_count();
    ctx_ = std::make_unique<cpu::OpContext>(threads, model_->max_row());
  }
  cpu_ = std::make_unique<cpu::CpuBackend>(*ctx_);
  gpu_ = place_model(*model_, files_, options_.placement, plan_ctx, options_.kv, plan_ubatch, options_.quiet);
  backends_ = model::Backends{cpu_.get(), gpu_.get()};
  if (options_.prepare) prepare_weights(*model_, backends_, options_.kv);
}

void Engine::set_threads(int n) {
  if (!ctx_) fail("engine: the model is not placed yet (Engine::place)");
  if (n == threads()) return;
  if (options_.shared_pool) fail("engine: threads of a shared pool are set by its owner");
  options_.threads = n;
  cpu_.reset();
  ctx_.reset();
  ctx_ = std::make_unique<cpu::OpContext>(n, model_->max_row());
  cpu_ = std::make_unique<cpu::CpuBackend>(*ctx_);
  backends_.cpu = cpu_.get();
  if (options_.prepare) prepare_weights(*model_, backends_, options_.kv);
}

std::shared_ptr<ThreadPool> Engine::shared_pool() const {
  if (!ctx_) fail("engine: the model is not placed yet (Engine::place)");
  return ctx_->shared_pool();
}

const model::Backends& Engine::backends() const {
  if (!ctx_) fail("engine: the model is not placed yet (Engine::place)");
  return backends_;
}

Engine::~Engine() = default;

int Engine::threads() const { return ctx_ ? ctx_->pool().size() : 0; }

bool Engine::forward_leaves_a_core_idle() const { return on_gpu() || threads() < default_thread_count(); }

const text::ChatTemplate& Engine::chat_template() const {
  if (!chat_template_) fail("{}", chat_template_error_);
  return *chat_template_;
}

std::unique_ptr<Session> Engine::new_session(int64_t n_ctx, int64_t n_ubatch) const {
  return std::make_unique<Session>(*model_, backends(), n_ctx, n_ubatch, options_.kv);
}

std::unique_ptr<model::SequenceState> Engine::new_sequence(int64_t n_ctx) const {
  return model_->new_sequence(backends(), n_ctx, options_.kv);
}

std::unique_ptr<model::Workspace> Engine::new_workspace(int64_t max_tokens) const {
  return model_->new_workspace(backends(), max_tokens);
}

void Engine::forward(model::Workspace& workspace, std::span<const model::SequenceInput> batch) const {
  model_->forward(backends(), workspace, batch);
}

std::vector<text::TokenId> Engine::tokenize(std::string_view text, const text::EncodeOptions& options) const {
  std::vector<text::TokenId> tokens = tokenizer_.encode(text, options);
  for (text::TokenId t : tokens) {
    if (t < 0 || t >= hparams().n_vocab) {
      fail("token {} from the tokenizer is outside the model's {} embeddings", t, hparams().n_vocab);
    }
  }
  return tokens;
}

}  // namespace tandem::runtime
