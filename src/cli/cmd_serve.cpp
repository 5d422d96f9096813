// `tandem serve -m MODEL [--host 127.0.0.1] [--port 8080] [--api-key KEY] [-np 4] [-c CTX]
// [--alias NAME] [--cache-ram GiB]`: the OpenAI-compatible server (src/serve/).
#include <cstdlib>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "serve/server.h"

namespace tandem::cli {
namespace {

struct ServeOptions {
  EngineFlags engine;
  std::string template_file;
  serve::ServerOptions server;
  SpeculativeFlags spec;
};

}  // namespace

void register_serve(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (chat and text completions, streaming) and a chat page at /");
  auto o = std::make_shared<ServeOptions>();
  o->engine.add_to(cmd);
  cmd->add_option("--template", o->template_file, "Jinja chat template file (default: the model's)");
  cmd->add_option("--host", o->server.host, "Address to listen on (loopback unless told otherwise)")->capture_default_str();
  cmd->add_option("--port", o->server.port, "Port (0: any free one, printed)")->capture_default_str();
  cmd->add_option("--api-key", o->server.api_key, "Require this key (Authorization: Bearer KEY); also TANDEM_API_KEY");
  cmd->add_option("--alias", o->server.alias, "The model's name in the API (default: the file's name)");
  cmd->add_option("--parallel", o->server.n_slots, "-np: sequences served at once (slots)")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->server.ctx_total,
                  "-c: context positions of all slots together, as llama-server (0: 4096 per slot, at most the "
                  "model's)")->capture_default_str();
  cmd->add_option("--cache-ram", o->server.cache_ram_gib, "GiB of RAM for the prompt cache's recurrent-state checkpoints")
      ->capture_default_str();
  cmd->add_option("--batch-tokens", o->server.step_tokens, "Most tokens per forward step (decode + prompt chunks)")
      ->capture_default_str()->check(CLI::Range(1, 8192));
  cmd->add_option("--queue", o->server.queue_max, "Requests that may wait for a slot before 503")
      ->capture_default_str()->check(CLI::Range(0, 100000));
  o->spec.add_to(cmd);
  cmd->callback([o] {
    serve::ServerOptions s = o->server;
    s.spec = o->spec;
    runtime::parse_spec_method(s.spec.method, !s.spec.draft_model.empty(), false);  // a bad --spec fails now, not after loading
    s.engine = o->engine.engine_options(0, s.step_tokens);
    s.engine.chat_template_file = o->template_file;
    s.engine.placement.mtp = o->spec.may_use_mtp();  // the MTP block placed as every-token weights
    if (s.api_key.empty()) {
      if (const char* k = std::getenv("TANDEM_API_KEY")) s.api_key = k;
    }
    serve::run_server(std::move(s));
  });
}

}  // namespace tandem::cli
