// `tandem serve`: an OpenAI-compatible HTTP server over one engine. The HTTP side (this
// folder) parses and answers requests; the runtime's Scheduler runs them with continuous
// batching and the prompt cache. Nothing here knows of kernels or devices.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/engine.h"
#include "runtime/speculative.h"

namespace tandem::serve {

struct ServerOptions {
  runtime::EngineOptions engine;  // plan_ctx/plan_ubatch are set from the slots
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;       // empty: no key asked
  std::string alias;         // the model's name in the API (default: the file's name)
  int n_slots = 4;
  int64_t ctx_total = 0;     // all slots together (llama-server's -c); 0: 4096 per slot within the model's
  double cache_ram_gib = 2;  // recurrent-state checkpoints
  int64_t step_tokens = 256; // tokens per forward step (decode + prompt chunks)
  int queue_max = 64;
  runtime::SpeculationOptions spec;  // per slot; "auto" resolved once the model is loaded
  size_t max_body_bytes = 8u << 20;
};

// Binds, loads the model (answering /health with 503 meanwhile), serves until SIGTERM or
// SIGINT, then stops taking requests, ends running streams and returns.
void run_server(ServerOptions options);

}  // namespace tandem::serve
