#include "serve/server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "grammar/structured_output.h"
#include "grammar/json_schema.h"
#include "runtime/scheduler.h"
#include "serve/api_error.h"
#include "serve/openai_request.h"
#include "serve/webui.h"
#include "text/chat_output.h"
#include "text/chat_prompt.h"

namespace tandem::serve {
namespace {

using Json = nlohmann::json;
using OJson = nlohmann::ordered_json;
using runtime::Job;

constexpr int kMaxJsonDepth = 64;

// Every JSON the server writes: text that is not valid UTF-8 (model output, file names,
// rendered templates) is replaced rather than thrown on.
std::string json_text(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// Runs a grammar step that may throw tandem::Error as a 400 naming `param`.
template <typename F>
auto as_bad_request(const std::string& param, F&& f) {
  try {
    return f();
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    throw ApiError(400, fmt::format("'{}': {}", param, e.what()), param);
  }
}

// The grammar a request asks for (GBNF text; empty: none) and the field that asked:
// llama-server's `grammar` and `json_schema`, or OpenAI's `response_format`.
std::string requested_grammar(const OJson& body, std::string& param) {
  auto present = [&](const char* key) { return body.contains(key) && !body[key].is_null(); };
  if (present("grammar")) {
    param = "grammar";
    if (!body["grammar"].is_string()) throw ApiError(400, "'grammar' must be a string (GBNF)", param);
    return body["grammar"].get<std::string>();
  }
  if (present("json_schema")) {
    param = "json_schema";
    return as_bad_request(param, [&] { return grammar::json_schema_to_gbnf(body["json_schema"]); });
  }
  if (present("response_format")) {
    param = "response_format";
    return as_bad_request(param, [&] { return grammar::response_format_gbnf(body["response_format"]); });
  }
  return {};
}

Json error_body(const ApiError& e) {
  return Json{{"error", {{"message", e.what()},
                         {"type", e.type()},
                         {"param", e.param().empty() ? Json() : Json(e.param())},
                         {"code", e.code().empty() ? Json() : Json(e.code())}}}};
}

// The error a job ended with, once its response has begun (a stream, a kept-alive body).
Json job_error_body(const runtime::Job& job) {
  return error_body(ApiError(job.request_at_fault() ? 400 : 500, job.error()));
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  if (e.status() == 503) res.set_header("Retry-After", "1");
  res.set_content(json_text(error_body(e)), "application/json");
}

Json parse_body(const httplib::Request& req) {
  if (req.body.empty()) throw ApiError(400, "the request has no body (a JSON object is expected)");
  int too_deep = 0;
  Json body = Json::parse(
      req.body,
      [&](int depth, Json::parse_event_t, Json&) {
        if (depth > kMaxJsonDepth) too_deep = 1;
        return true;
      },
      false);
  if (too_deep) throw ApiError(400, fmt::format("the JSON body nests deeper than {} levels", kMaxJsonDepth));
  if (body.is_discarded()) {
    // Say where: nlohmann's exception names the byte.
    try {
      const Json unused = Json::parse(req.body);
      (void)unused;
    } catch (const Json::parse_error& pe) {
      throw ApiError(400, fmt::format("the body is not valid JSON: {}", pe.what()));
    }
    throw ApiError(400, "the body is not valid JSON");
  }
  return body;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}{:016x}", prefix, rng());
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class Server {
 public:
  explicit Server(ServerOptions o) : o_(std::move(o)) {
    if (o_.alias.empty()) o_.alias = std::filesystem::path(o_.engine.model_path).filename().string();
  }
  void run();

 private:
  void routes();
  bool authorized(const httplib::Request& req) const;
  void require_ready() const {
    if (!ready_.load()) throw ApiError(503, "the model is still loading");
  }
  void check_model(const std::string& model) const;
  void chat_completions(const httplib::Request& req, httplib::Response& res);
  void completions(const httplib::Request& req, httplib::Response& res);
  // `forced` is text the prompt already ends with that belongs to the answer (the opening
  // of a tool call that tool_choice requires); the output parser sees it first.
  void respond(CompletionRequest r, std::vector<int32_t> prompt, std::string prompt_text, httplib::Response& res,
               std::string forced = {});
  Json logprob_entry(const runtime::TokenLogprob& lp) const;
  // The chosen token's entry with its alternatives (OpenAI's chat logprobs.content item).
  Json logprob_content(const std::vector<runtime::TokenLogprob>& top) const;
  RequestLimits limits() const { return {engine_->hparams().n_vocab, scheduler_->options().slot_ctx}; }
  // A seed for requests that name none (each draws its own).
  uint64_t next_seed() {
    std::lock_guard<std::mutex> lock(seed_m_);
    return seed_rng_();
  }
  std::string metrics() const;

  ServerOptions o_;
  httplib::Server http_;
  std::unique_ptr<runtime::Engine> engine_;
  std::unique_ptr<runtime::Engine> draft_engine_;  // speculation with a draft model (-md)
  std::unique_ptr<runtime::Scheduler> scheduler_;
  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> http_errors_{0};
  std::mt19937_64 seed_rng_{std::random_device{}()};
  std::mutex seed_m_;
};

bool Server::authorized(const httplib::Request& req) const {
  // The chat page's files are public: the page itself asks for the key (API calls need it).
  if (o_.api_key.empty() || req.path == "/health" || (req.method == "GET" && find_web_asset(req.path))) return true;
  const std::string auth = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  std::string key = auth.rfind(prefix, 0) == 0 ? auth.substr(prefix.size()) : req.get_header_value("X-Api-Key");
  return constant_time_equal(key, o_.api_key);
}

void Server::check_model(const std::string& model) const {
  if (model.empty() || model == o_.alias || model == o_.engine.model_path ||
      model == std::filesystem::path(o_.engine.model_path).filename().string()) {
    return;
  }
  throw ApiError(404, fmt::format("model '{}' is not served here (this server has '{}')", model, o_.alias), "model",
                 "model_not_found");
}

Json Server::logprob_entry(const runtime::TokenLogprob& lp) const {
  text::DecodeOptions d;
  d.show_special = true;
  d.strip_space_prefix = false;
  const std::string piece = engine_->tokenizer().decode(std::span<const int32_t>(&lp.token, 1), d);
  Json bytes = Json::array();
  for (unsigned char c : piece) bytes.push_back(c);
  // A piece may be part of a UTF-8 character: send valid text, the bytes say the rest.
  return Json{{"token", piece},  // serialized with invalid UTF-8 replaced; "bytes" keeps them exact
              {"logprob", lp.logprob},
              {"bytes", bytes}};
}

Json Server::logprob_content(const std::vector<runtime::TokenLogprob>& top) const {
  Json entry = logprob_entry(top[0]);
  Json alternatives = Json::array();
  for (size_t i = 1; i < top.size(); ++i) alternatives.push_back(logprob_entry(top[i]));
  entry["top_logprobs"] = alternatives;
  return entry;
}

void Server::respond(CompletionRequest r, std::vector<int32_t> prompt, std::string prompt_text, httplib::Response& res,
                     std::string forced) {
  std::shared_ptr<Job> job;
  try {
    job = scheduler_->submit(std::move(prompt), r.params);
  } catch (const runtime::QueueFull& e) {
    throw ApiError(503, e.what());
  } catch (const Error& e) {
    throw ApiError(400, e.what(), r.chat ? "messages" : "prompt", "context_length_exceeded");
  }
  // What the output parser needs.
  text::ChatOutputOptions po;
  if (r.chat) {
    po.starts_in_reasoning = grammar::ends_inside_think(prompt_text);
    po.parse_tool_calls = !r.tools.empty() && r.tool_choice != "none";
    po.tools = r.tools;
  }
  const std::string id = random_id(r.chat ? "chatcmpl-" : "cmpl-");
  const int64_t created = unix_time();
  const std::string model = o_.alias;
  auto usage = [job] {
    return Json{{"prompt_tokens", job->prompt_tokens()},
                {"completion_tokens", job->completion_tokens()},
                {"total_tokens", job->prompt_tokens() + job->completion_tokens()},
                {"prompt_tokens_details", {{"cached_tokens", job->cached_tokens()}}},
                {"timings", {{"queue_s", job->queue_seconds()}, {"prompt_s", job->prompt_seconds()},
                             {"generation_s", job->generation_seconds()}}}};
  };
  // llama-server's per-request speeds (its field names), for the chat page and other UIs:
  // prompt_n counts the prompt tokens processed, not those reused from the cache.
  auto timings = [job] {
    const int64_t prompt_n = job->prompt_tokens() - job->cached_tokens(), predicted_n = job->completion_tokens();
    const double prompt_s = job->prompt_seconds(), gen_s = job->generation_seconds();
    return Json{{"cache_n", job->cached_tokens()},
                {"prompt_n", prompt_n},
                {"prompt_ms", prompt_s * 1e3},
                {"prompt_per_second", prompt_s > 0 ? prompt_n / prompt_s : 0.0},
                {"predicted_n", predicted_n},
                {"predicted_ms", gen_s * 1e3},
                {"predicted_per_second", gen_s > 0 ? predicted_n / gen_s : 0.0},
                // Speculation (llama-server's names): guesses checked and kept for this request.
                {"draft_n", job->drafted_tokens()},
                {"draft_n_accepted", job->accepted_tokens()}};
  };
  auto finish_reason = [job](bool tool_calls) -> Json {
    if (!job->error().empty()) return "error";
    if (tool_calls) return "tool_calls";
    switch (job->reason()) {
      case runtime::FinishReason::Length:
      case runtime::FinishReason::ContextFull:
        return "length";
      default:
        return "stop";
    }
  };

  if (!r.stream) {
    // The whole answer, built once the job has finished.
    auto answer = [job, po, id, created, model, r, prompt_text, usage, timings, finish_reason](
                      const std::string& text, const Json& logprobs) {
      Json body;
      if (r.chat) {
        const text::ParsedChatOutput out = text::parse_chat_output(text, po, true);
        Json msg = {{"role", "assistant"}, {"content", out.content.empty() && !out.tool_calls.empty() ? Json() : Json(out.content)}};
        if (!out.reasoning.empty()) msg["reasoning_content"] = out.reasoning;
        if (!out.tool_calls.empty()) {
          Json calls = Json::array();
          for (const text::ParsedToolCall& c : out.tool_calls) {
            calls.push_back({{"id", random_id("call_")}, {"type", "function"},
                             {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
          }
          msg["tool_calls"] = calls;
        }
        body = {{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", model},
                {"choices", Json::array({Json{{"index", 0}, {"message", msg},
                                              {"logprobs", r.logprobs ? Json{{"content", logprobs}} : Json()},
                                              {"finish_reason", finish_reason(!out.tool_calls.empty())}}})},
                {"usage", usage()}, {"timings", timings()}};
      } else {
        Json lp;
        if (r.logprobs) {
          Json tokens = Json::array(), values = Json::array(), tops = Json::array();
          for (const Json& e : logprobs) {
            tokens.push_back(e["token"]);
            values.push_back(e["logprob"]);
            Json t = Json::object();
            for (const Json& x : e["top_logprobs"]) t[x["token"].get<std::string>()] = x["logprob"];
            tops.push_back(t);
          }
          lp = {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}};
        }
        body = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model},
                {"choices", Json::array({Json{{"index", 0}, {"text", (r.echo ? prompt_text : "") + text},
                                              {"logprobs", lp}, {"finish_reason", finish_reason(false)}}})},
                {"usage", usage()}, {"timings", timings()}};
      }
      return body;
    };
    auto state = std::make_shared<std::pair<std::string, Json>>(forced, Json::array());
    auto take = [this, job, state](int timeout_ms) {
      std::vector<Job::Event> events;
      const bool done = job->wait(events, timeout_ms);
      for (Job::Event& e : events) {
        state->first += e.text;
        if (!e.top.empty()) state->second.push_back(logprob_content(e.top));
      }
      return done;
    };
    // A short job is answered whole, with a proper status if it failed.
    if (take(1000)) {
      if (!job->error().empty()) throw ApiError(job->request_at_fault() ? 400 : 500, job->error());
      res.set_content(json_text(answer(state->first, state->second)), "application/json");
      return;
    }
    // A long one is answered through a chunked body that carries a blank (JSON allows
    // leading whitespace) each second while it runs: the write fails once the client has
    // gone, and the job is cancelled, freeing its slot, instead of generating for no one.
    // (The charset parameter keeps cpp-httplib from gzipping the body, which would hold
    // the blanks back in the compressor.)
    auto last_beat = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
    res.set_chunked_content_provider(
        "application/json; charset=utf-8",
        [job, state, take, answer, last_beat](size_t, httplib::DataSink& sink) {
          if (!take(250)) {
            const auto now = std::chrono::steady_clock::now();
            if (now - *last_beat < std::chrono::seconds(1)) return true;
            *last_beat = now;
            if (!sink.write(" ", 1)) {
              job->cancel();
              return false;
            }
            return true;
          }
          const Json body = job->error().empty()
                                ? answer(state->first, state->second)
                                : job_error_body(*job);
          const std::string text = json_text(body);
          sink.write(text.data(), text.size());
          sink.done();
          return true;
        },
        [job](bool) { job->cancel(); });
    return;
  }

  // Streaming: server-sent events as the OpenAI clients parse them.
  struct StreamState {
    std::string text;
    size_t sent_content = 0, sent_reasoning = 0;
    size_t sent_calls = 0;
    bool started = false;
  };
  auto state = std::make_shared<StreamState>();
  state->text = forced;
  const bool chat = r.chat, include_usage = r.include_usage, logprobs_on = r.logprobs, echo = r.echo;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, state, po, id, created, model, chat, include_usage, logprobs_on, echo, prompt_text, usage, timings,
       finish_reason](size_t, httplib::DataSink& sink) {
        auto send = [&](const Json& j) {
          const std::string line = "data: " + json_text(j) + "\n\n";
          return sink.write(line.data(), line.size());
        };
        auto chunk = [&](Json delta_or_text, Json finish, Json lp) {
          if (chat) {
            return Json{{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
                        {"choices", Json::array({Json{{"index", 0}, {"delta", delta_or_text}, {"logprobs", lp},
                                                      {"finish_reason", finish}}})}};
          }
          return Json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model},
                      {"choices", Json::array({Json{{"index", 0}, {"text", delta_or_text}, {"logprobs", lp},
                                                    {"finish_reason", finish}}})}};
        };
        // Parses the text so far and sends what is new: reasoning, content, tool calls.
        auto emit_chat = [&](bool final, const Json& lp) {
          const text::ParsedChatOutput out = text::parse_chat_output(state->text, po, final);
          Json delta = Json::object();
          if (out.reasoning.size() > state->sent_reasoning) {
            delta["reasoning_content"] = out.reasoning.substr(state->sent_reasoning);
            state->sent_reasoning = out.reasoning.size();
          }
          if (out.content.size() > state->sent_content) {
            delta["content"] = out.content.substr(state->sent_content);
            state->sent_content = out.content.size();
          }
          // Tool calls: each whole (index, id, name, arguments) once it has closed. One still
          // arriving may yet turn out malformed and stay content; a sent call cannot be taken back.
          Json calls = Json::array();
          for (size_t i = state->sent_calls; i < out.tool_calls.size(); ++i) {
            calls.push_back({{"index", i}, {"id", random_id("call_")}, {"type", "function"},
                             {"function", {{"name", out.tool_calls[i].name}, {"arguments", out.tool_calls[i].arguments}}}});
          }
          state->sent_calls = std::max(state->sent_calls, out.tool_calls.size());
          if (!calls.empty()) delta["tool_calls"] = calls;
          return (delta.empty() && lp.is_null()) || send(chunk(delta, nullptr, lp));
        };
        if (!state->started) {
          state->started = true;
          if (chat && !send(chunk(Json{{"role", "assistant"}, {"content", ""}}, nullptr, nullptr))) {
            job->cancel();
            return false;
          }
          if (!chat && echo && !send(chunk(prompt_text, nullptr, nullptr))) {
            job->cancel();
            return false;
          }
        }
        std::vector<Job::Event> events;
        const bool done = job->wait(events, 200);
        if (events.empty() && !done) {
          // Idle: an SSE comment finds a client that went away.
          if (!sink.write(": \n\n", 4)) {
            job->cancel();
            return false;
          }
          return true;
        }
        for (Job::Event& e : events) {
          state->text += e.text;
          Json lp = nullptr;
          if (logprobs_on && !e.top.empty()) lp = Json{{"content", Json::array({logprob_content(e.top)})}};
          if (!chat) {
            if ((!e.text.empty() || !lp.is_null()) && !send(chunk(e.text, nullptr, lp))) {
              job->cancel();
              return false;
            }
            continue;
          }
          if (!emit_chat(false, lp)) {
            job->cancel();
            return false;
          }
        }
        if (!done) return true;
        // The end: release what the parser held back (a partial marker, an unclosed call,
        // an answer that turns out to be a bare JSON call).
        if (chat) emit_chat(true, nullptr);
        if (!job->error().empty()) {
          send(job_error_body(*job));
        } else {
          Json last = chunk(chat ? Json::object() : Json(""), finish_reason(chat && state->sent_calls > 0), nullptr);
          last["timings"] = timings();  // as llama-server: on the chunk that finishes
          send(last);
          if (include_usage) {
            send(Json{{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                      {"model", model}, {"choices", Json::array()}, {"usage", usage()}});
          }
        }
        const std::string end = "data: [DONE]\n\n";
        sink.write(end.data(), end.size());
        sink.done();
        return true;
      },
      [job](bool) { job->cancel(); });
}

void Server::chat_completions(const httplib::Request& req, httplib::Response& res) {
  require_ready();
  const Json body = parse_body(req);
  CompletionRequest r = parse_chat_request(body, limits(), next_seed());
  check_model(r.model);
  text::ChatPrompt prompt;
  try {
    prompt = text::encode_chat(engine_->chat_template(), engine_->tokenizer(), r.chat_inputs);
  } catch (const Error& e) {
    throw ApiError(400, fmt::format("chat template: {}", e.what()), "messages");
  }
  // The body again with object keys in the client's order: a schema's properties are
  // generated in the order it lists them.
  const OJson ordered = OJson::parse(req.body);
  // tool_choice required / a named function: the answer is started as a tool call in the
  // template's own form and the rest is held to the tools' parameter schemas.
  std::string forced, gbnf, gbnf_param;
  if (r.tool_choice != "auto" && r.tool_choice != "none") {
    gbnf_param = "tools";
    const grammar::ToolCallConstraint call = as_bad_request(gbnf_param, [&] {
      return grammar::tool_call_constraint(ordered.at("tools"), r.tool_choice, engine_->chat_template().xml_tool_calls());
    });
    forced = call.prefix;
    gbnf = call.gbnf;
    text::EncodeOptions enc;
    enc.parse_special = true;  // <tool_call> is the vocabulary's own token where it has one
    const std::vector<int32_t> more = engine_->tokenize(forced, enc);
    prompt.tokens.insert(prompt.tokens.end(), more.begin(), more.end());
    prompt.text += forced;
  } else {
    gbnf = requested_grammar(ordered, gbnf_param);
  }
  if (!gbnf.empty()) {
    // A reasoning model answers after </think>: the grammar holds from there.
    r.params.think_gate = !forced.empty()              ? runtime::ThinkGate::None
                          : grammar::ends_inside_think(prompt.text) ? runtime::ThinkGate::Open
                                                       : runtime::ThinkGate::Optional;
    const bool leading_space = r.params.think_gate != runtime::ThinkGate::None;
    r.params.grammar = as_bad_request(gbnf_param, [&] { return grammar::compile(gbnf, leading_space); });
  }
  respond(std::move(r), std::move(prompt.tokens), std::move(prompt.text), res, std::move(forced));
}

void Server::completions(const httplib::Request& req, httplib::Response& res) {
  require_ready();
  const Json body = parse_body(req);
  CompletionRequest r = parse_completion_request(body, limits(), next_seed());
  check_model(r.model);
  std::vector<int32_t> tokens = r.prompt_tokens;
  std::string text = r.prompt_text;
  if (tokens.empty()) {
    text::EncodeOptions enc;
    enc.add_special = true;
    enc.parse_special = true;  // a raw prompt may spell out control tokens, as in llama-server
    tokens = engine_->tokenize(r.prompt_text, enc);
  } else if (r.echo) {
    text = engine_->tokenizer().decode(tokens);  // only echo shows the prompt as text
  }
  std::string gbnf_param;
  const std::string gbnf = requested_grammar(OJson::parse(req.body), gbnf_param);
  if (!gbnf.empty()) r.params.grammar = as_bad_request(gbnf_param, [&] { return grammar::compile(gbnf); });
  respond(std::move(r), std::move(tokens), std::move(text), res);
}

std::string Server::metrics() const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  // engine_ and scheduler_ are set by the loading thread before ready_ (release/acquire).
  const runtime::SchedulerStats s = ready_.load() ? scheduler_->stats() : runtime::SchedulerStats{};
  metric("tandem_ready", "gauge", "1 once the model is loaded and requests are served", ready_.load() ? 1 : 0);
  metric("tandem_slots", "gauge", "Sequence slots (-np)", s.slots);
  metric("tandem_requests_running", "gauge", "Requests holding a slot (prompt or generation)", s.slots_busy);
  metric("tandem_requests_waiting", "gauge", "Requests queued for a free slot", s.queued);
  metric("tandem_requests_total", "counter", "Completion requests accepted", static_cast<double>(s.requests_total));
  metric("tandem_requests_rejected_total", "counter", "Requests refused with 503 because the queue was full",
         static_cast<double>(s.requests_rejected));
  metric("tandem_http_errors_total", "counter", "Requests answered with a 4xx or 5xx", static_cast<double>(http_errors_.load()));
  metric("tandem_prompt_tokens_total", "counter", "Prompt tokens of finished requests", static_cast<double>(s.prompt_tokens_total));
  metric("tandem_prompt_tokens_cached_total", "counter", "Prompt tokens reused from the prompt cache (not processed again)",
         static_cast<double>(s.prompt_tokens_cached_total));
  metric("tandem_generated_tokens_total", "counter", "Tokens generated", static_cast<double>(s.generated_tokens_total));
  metric("tandem_spec_drafted_tokens_total", "counter", "Guessed tokens checked by speculation (--spec)",
         static_cast<double>(s.spec_drafted_total));
  metric("tandem_spec_accepted_tokens_total", "counter", "Guessed tokens that were kept",
         static_cast<double>(s.spec_accepted_total));
  metric("tandem_spec_verify_steps_total", "counter", "Slot steps that checked guesses (verify passes)",
         static_cast<double>(s.spec_verify_steps_total));
  metric("tandem_spec_paused_tokens_total", "counter",
         "Tokens decoded without guessing while a slot's acceptance was too low to pay",
         static_cast<double>(s.spec_paused_tokens_total));
  metric("tandem_prompt_cache_checkpoints", "gauge", "Recurrent-state checkpoints held (hybrid models)",
         static_cast<double>(s.checkpoints));
  metric("tandem_prompt_cache_bytes", "gauge", "Bytes of recurrent-state checkpoints held (limit: --cache-ram)",
         static_cast<double>(s.checkpoint_bytes));
  metric("tandem_busy_seconds_total", "counter", "Seconds spent in forward steps", s.busy_seconds);
  auto histogram = [&](const char* name, const char* help, const uint64_t* counts, double sum, uint64_t n) {
    out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (size_t b = 0; b < runtime::SchedulerStats::kBucketCount; ++b) {
      cumulative += counts[b];
      out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, runtime::SchedulerStats::kBuckets[b], cumulative);
    }
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, n, name, sum, name, n);
  };
  histogram("tandem_time_to_first_token_seconds", "From arrival to the first generated token", s.ttft_counts,
            s.ttft_sum, s.ttft_n);
  histogram("tandem_time_per_output_token_seconds", "Mean time between generated tokens, per request", s.tpot_counts,
            s.tpot_sum, s.tpot_n);
  return out;
}

void Server::routes() {
  auto wrap = [this](auto handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, e.what()));
      }
    };
  };
  http_.Post("/v1/chat/completions", wrap([this](const auto& q, auto& s) { chat_completions(q, s); }));
  http_.Post("/chat/completions", wrap([this](const auto& q, auto& s) { chat_completions(q, s); }));
  http_.Post("/v1/completions", wrap([this](const auto& q, auto& s) { completions(q, s); }));
  http_.Post("/completions", wrap([this](const auto& q, auto& s) { completions(q, s); }));
  auto models = wrap([this](const httplib::Request&, httplib::Response& res) {
    Json m = {{"id", o_.alias}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "tandem"}};
    if (ready_.load()) m["meta"] = {{"n_ctx_slot", scheduler_->options().slot_ctx},
                              {"n_vocab", engine_->hparams().n_vocab}, {"arch", engine_->hparams().arch}};
    res.set_content(json_text(Json{{"object", "list"}, {"data", Json::array({m})}}), "application/json");
  });
  http_.Get("/v1/models", models);
  http_.Get("/models", models);
  http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = ready_.load() ? 200 : 503;
    res.set_content(json_text(Json{{"status", ready_.load() ? "ok" : "loading"}}), "application/json");
  });
  // The chat page (src/serve/webui/), embedded in the binary. The policy keeps it to this
  // server: no other origin for scripts, styles or requests.
  for (const WebAsset& asset : web_assets()) {
    auto serve_asset = [&asset](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
                     " base-uri 'none'; frame-ancestors 'none'");
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_content(std::string(asset.bytes), std::string(asset.mime));
    };
    http_.Get(std::string(asset.path), serve_asset);
    if (asset.path == "/index.html") http_.Get("/", serve_asset);
  }
  http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics(), "text/plain; version=0.0.4");
  });
  http_.Post("/tokenize", wrap([this](const httplib::Request& req, httplib::Response& res) {
    require_ready();
    const Json body = parse_body(req);
    if (!body.is_object() || !body.contains("content") || !body["content"].is_string()) {
      throw ApiError(400, "'content' must be a string", "content");
    }
    text::EncodeOptions enc;
    enc.add_special = body.value("add_special", false);
    enc.parse_special = body.value("parse_special", true);
    const std::vector<int32_t> tokens = engine_->tokenize(body["content"].get<std::string>(), enc);
    res.set_content(json_text(Json{{"tokens", tokens}}), "application/json");
  }));
  http_.Post("/detokenize", wrap([this](const httplib::Request& req, httplib::Response& res) {
    require_ready();
    const Json body = parse_body(req);
    if (!body.is_object() || !body.contains("tokens") || !body["tokens"].is_array()) {
      throw ApiError(400, "'tokens' must be a list of token ids", "tokens");
    }
    std::vector<int32_t> tokens;
    for (const Json& t : body["tokens"]) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= engine_->hparams().n_vocab) {
        throw ApiError(400, fmt::format("token ids must be integers in 0..{}", engine_->hparams().n_vocab - 1), "tokens");
      }
      tokens.push_back(t.get<int32_t>());
    }
    res.set_content(json_text(Json{{"content", engine_->tokenizer().decode(tokens)}}),
                    "application/json");
  }));
  http_.Post("/apply-template", wrap([this](const httplib::Request& req, httplib::Response& res) {
    require_ready();
    const Json body = parse_body(req);
    const CompletionRequest r = parse_chat_request(body, limits(), 0);
    try {
      res.set_content(json_text(Json{{"prompt", engine_->chat_template().render(r.chat_inputs)}}), "application/json");
    } catch (const Error& e) {
      throw ApiError(400, fmt::format("chat template: {}", e.what()), "messages");
    }
  }));
  // A known path asked with the wrong method is a 405, not a 404.
  for (const char* path : {"/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/tokenize",
                           "/detokenize", "/apply-template"}) {
    http_.Get(path, [path](const httplib::Request&, httplib::Response& res) {
      send_error(res, ApiError(405, fmt::format("{} takes POST", path)));
    });
  }
  for (const char* path : {"/v1/models", "/models", "/health", "/metrics"}) {
    auto h = [path](const httplib::Request&, httplib::Response& res) {
      send_error(res, ApiError(405, fmt::format("{} takes GET", path)));
    };
    http_.Post(path, h);
    http_.Put(path, h);
    http_.Delete(path, h);
  }
  http_.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    ++http_errors_;
    if (!res.body.empty()) return;
    const int status = res.status;
    const std::string message = status == 404 ? fmt::format("no such endpoint: {} {}", req.method, req.path)
                                : status == 413 ? "the request body is too large"
                                                : fmt::format("HTTP {}", status);
    res.set_content(json_text(error_body(ApiError(status, message))), "application/json");
  });
  http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)", "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
}

void Server::run() {
  // SIGTERM/SIGINT are taken by one thread (sigwait); every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not a kill

  const int threads = std::clamp(o_.n_slots + o_.queue_max + 8, 8, 512);
  http_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_.set_payload_max_length(o_.max_body_bytes);
  http_.set_read_timeout(30, 0);
  http_.set_write_timeout(30, 0);
  routes();
  if (o_.port == 0) {
    o_.port = http_.bind_to_any_port(o_.host);
    if (o_.port <= 0) fail("cannot listen on {} (not an address here)", o_.host);
  } else if (!http_.bind_to_port(o_.host, o_.port)) {
    fail("cannot listen on {}:{} (in use, or not an address here)", o_.host, o_.port);
  }
  std::thread listener([this] { http_.listen_after_bind(); });
  std::atomic<bool> stop_requested{false};
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (stop_requested.exchange(true)) return;
    fmt::print(stderr, "serve: signal {}: stopping (running streams are ended)\n", sig);
    if (ready_.load()) scheduler_->shutdown();  // while loading: the listener stops; run() returns after loading
    http_.stop();
  });
  fmt::print(stderr, "serve: listening on http://{}:{} (loading {})\n", o_.host, o_.port, o_.engine.model_path);
  try {
    runtime::EngineOptions eo = o_.engine;
    eo.plan_ctx = 0;  // placed below, once the model's context is known
    engine_ = std::make_unique<runtime::Engine>(eo);
    if (o_.ctx_total <= 0) o_.ctx_total = std::min<int64_t>(engine_->hparams().n_ctx_train, 4096) * o_.n_slots;
    if (o_.ctx_total / o_.n_slots < 64) {
      fail("-c {} over {} slots leaves {} positions each; give at least 64 per slot", o_.ctx_total, o_.n_slots,
           o_.ctx_total / o_.n_slots);
    }
    engine_->place(o_.ctx_total, o_.step_tokens + o_.n_slots);
    runtime::SchedulerOptions so;
    so.n_slots = o_.n_slots;
    so.slot_ctx = o_.ctx_total / o_.n_slots;
    so.step_tokens = o_.step_tokens;
    so.queue_max = o_.queue_max;
    so.cache_ram_bytes = static_cast<uint64_t>(o_.cache_ram_gib * (1ull << 30));
    so.spec = o_.spec.resolve(*engine_);
    if (so.spec != runtime::SpecMethod::None) {
      so.spec_draft_max = o_.spec.draft_max_for(so.spec);
      so.spec_draft_min = o_.spec.draft_min;
      so.spec_ngram_min = o_.spec.ngram_min;
      so.spec_ngram_max = o_.spec.ngram_max;
      so.draft_p_min = o_.spec.draft_p_min;
    }
    if (so.spec == runtime::SpecMethod::Draft) {
      draft_engine_ = runtime::open_draft_engine(*engine_, o_.spec.draft_model, o_.ctx_total, nullptr);
      so.draft_engine = draft_engine_.get();
    }
    scheduler_ = std::make_unique<runtime::Scheduler>(*engine_, so);
  } catch (...) {
    stop_requested.store(true);
    http_.stop();
    listener.join();
    pthread_kill(signal_waiter.native_handle(), SIGTERM);
    signal_waiter.join();
    throw;
  }
  ready_.store(true);
  const runtime::SchedulerOptions& so = scheduler_->options();
  const char* spec_names[] = {"", ", n-gram speculation", ", a draft model speculating", ", MTP speculation"};
  fmt::print(stderr, "serve: ready: model '{}', {} slots x {} tokens, {} threads{}{}\n", o_.alias, o_.n_slots,
             o_.ctx_total / o_.n_slots, engine_->threads(),
             so.spec_draft_max > 0 ? fmt::format("{} (up to {} guesses)", spec_names[static_cast<int>(so.spec)],
                                                 so.spec_draft_max)
                                   : std::string(),
             o_.api_key.empty() ? "" : ", API key required");
  fmt::print(stderr, "serve: chat page at http://{}:{}/\n", o_.host.find(':') != std::string::npos ? "[" + o_.host + "]" : o_.host,
             o_.port);
  listener.join();
  if (!stop_requested.exchange(true)) {
    pthread_kill(signal_waiter.native_handle(), SIGTERM);
  }
  signal_waiter.join();
  scheduler_.reset();
}

}  // namespace

void run_server(ServerOptions options) {
  if (options.n_slots < 1 || options.n_slots > 256) fail("-np must be 1..256 (got {})", options.n_slots);
  if (options.port < 0 || options.port > 65535) fail("--port must be 0..65535 (got {})", options.port);
  if (options.cache_ram_gib < 0) fail("--cache-ram must be >= 0 (got {})", options.cache_ram_gib);
  Server server(std::move(options));
  server.run();
}

}  // namespace tandem::serve
