#include "serve/openai_request.h"

#include <cmath>

#include "serve/api_error.h"

namespace tandem::serve {
namespace {

using Json = nlohmann::json;
using OJson = nlohmann::ordered_json;

// Fields this server reads; any other top-level field is ignored as OpenAI ignores what it
// does not know only for metadata-like fields: the ones below that change the output and
// are not supported are rejected explicitly.
// (response_format, grammar and json_schema are read by the server: structured output.)
const char* const kUnsupported[] = {"n", "best_of", "suffix", "logit_bias", "functions", "function_call",
                                    "audio", "modalities", "prediction"};

double number(const Json& body, const char* key, double lo, double hi) {
  const Json& v = body[key];
  if (!v.is_number()) bad_request(key, "'{}' must be a number (got {})", key, v.type_name());
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) bad_request(key, "'{}' must be between {} and {} (got {})", key, lo, hi, d);
  return d;
}

int64_t integer(const Json& body, const char* key, int64_t lo, int64_t hi) {
  const Json& v = body[key];
  if (!v.is_number_integer()) bad_request(key, "'{}' must be an integer (got {})", key, v.dump());
  const int64_t i = v.get<int64_t>();
  if (i < lo || i > hi) bad_request(key, "'{}' must be between {} and {} (got {})", key, lo, hi, i);
  return i;
}

bool boolean(const Json& body, const char* key) {
  const Json& v = body[key];
  if (!v.is_boolean()) bad_request(key, "'{}' must be true or false (got {})", key, v.dump());
  return v.get<bool>();
}

bool has(const Json& body, const char* key) { return body.contains(key) && !body[key].is_null(); }

void parse_common(const Json& body, const RequestLimits& limits, uint64_t seed, CompletionRequest& r) {
  if (!body.is_object()) bad_request("", "the request body must be a JSON object");
  for (const char* key : kUnsupported) {
    if (!has(body, key)) continue;
    if (std::string(key) == "n" && body[key].is_number_integer() && body[key].get<int64_t>() == 1) continue;
    if (std::string(key) == "best_of" && body[key].is_number_integer() && body[key].get<int64_t>() == 1) continue;
    if (std::string(key) == "logit_bias" && body[key].is_object() && body[key].empty()) continue;
    bad_request(key, "'{}' is not supported by this server (value {})", key, body[key].dump());
  }
  if (has(body, "model")) {
    if (!body["model"].is_string()) bad_request("model", "'model' must be a string");
    r.model = body["model"].get<std::string>();
  }
  if (has(body, "stream")) r.stream = boolean(body, "stream");
  if (has(body, "stream_options")) {
    const Json& so = body["stream_options"];
    if (!so.is_object()) bad_request("stream_options", "'stream_options' must be an object");
    if (!r.stream) bad_request("stream_options", "'stream_options' is only allowed with stream: true");
    if (has(so, "include_usage")) r.include_usage = boolean(so, "include_usage");
  }
  // Unset fields keep llama-server's defaults (temperature 0.8, top-k 40, top-p 0.95, min-p
  // 0.05: SamplerParams'), so the same request means the same thing on both servers, and a
  // request naming only a temperature samples as llama-server would.
  runtime::SamplerParams& sp = r.params.sampling;
  if (has(body, "temperature")) sp.temperature = static_cast<float>(number(body, "temperature", 0, 2));
  if (has(body, "top_p")) {
    sp.top_p = static_cast<float>(number(body, "top_p", 0, 1));
    if (sp.top_p <= 0) bad_request("top_p", "'top_p' must be greater than 0");
  }
  if (has(body, "top_k")) sp.top_k = static_cast<int32_t>(integer(body, "top_k", 0, limits.n_vocab));
  if (has(body, "min_p")) sp.min_p = static_cast<float>(number(body, "min_p", 0, 1));
  if (has(body, "presence_penalty")) sp.presence_penalty = static_cast<float>(number(body, "presence_penalty", -2, 2));
  if (has(body, "frequency_penalty")) sp.frequency_penalty = static_cast<float>(number(body, "frequency_penalty", -2, 2));
  if (has(body, "repeat_penalty")) {
    sp.repeat_penalty = static_cast<float>(number(body, "repeat_penalty", 0, 10));
    if (sp.repeat_penalty <= 0) bad_request("repeat_penalty", "'repeat_penalty' must be greater than 0");
  }
  sp.seed = has(body, "seed") ? static_cast<uint64_t>(integer(body, "seed", INT64_MIN, INT64_MAX)) : seed;
  // llama-server's extension: generate to the token budget even past end-of-generation.
  if (has(body, "ignore_eos")) r.params.ignore_eos = boolean(body, "ignore_eos");
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (has(body, key)) r.params.max_tokens = integer(body, key, 0, limits.max_tokens_cap);
  }
  if (has(body, "stop")) {
    const Json& s = body["stop"];
    if (s.is_string()) {
      r.params.stops.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      if (s.size() > 16) bad_request("stop", "'stop' may hold at most 16 strings (got {})", s.size());
      for (const Json& x : s) {
        if (!x.is_string()) bad_request("stop", "'stop' must be a string or a list of strings");
        r.params.stops.push_back(x.get<std::string>());
      }
    } else {
      bad_request("stop", "'stop' must be a string or a list of strings");
    }
    for (const std::string& x : r.params.stops) {
      if (x.empty()) bad_request("stop", "'stop' strings must not be empty");
    }
  }
}

std::string content_text(const Json& content, size_t index) {
  const std::string param = fmt::format("messages[{}].content", index);
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_request(param, "'{}' must be a string or a list of content parts", param);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    const std::string pp = fmt::format("{}[{}]", param, i);
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      bad_request(pp, "'{}' must be an object with a 'type'", pp);
    }
    const std::string type = part["type"].get<std::string>();
    if (type != "text") bad_request(pp, "content parts of type '{}' are not supported (only 'text')", type);
    if (!part.contains("text") || !part["text"].is_string()) bad_request(pp, "'{}' has no 'text' string", pp);
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

CompletionRequest parse_chat_request(const Json& body, const RequestLimits& limits, uint64_t seed) {
  CompletionRequest r;
  r.chat = true;
  parse_common(body, limits, seed, r);
  if (!has(body, "messages")) bad_request("messages", "'messages' is required");
  const Json& messages = body["messages"];
  if (!messages.is_array() || messages.empty()) bad_request("messages", "'messages' must be a non-empty list");
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad_request(param, "'{}' must be an object", param);
    if (!m.contains("role") || !m["role"].is_string()) bad_request(param + ".role", "'{}.role' must be a string", param);
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "developer" && role != "user" && role != "assistant" && role != "tool") {
      bad_request(param + ".role", "unknown role '{}' (system, developer, user, assistant or tool)", role);
    }
    OJson out = OJson::object();
    out["role"] = role == "developer" ? "system" : role;
    const bool has_calls = m.contains("tool_calls") && !m["tool_calls"].is_null();
    if (!m.contains("content") && !(role == "assistant" && has_calls)) {
      bad_request(param + ".content", "'{}.content' is required", param);
    }
    out["content"] = content_text(m.contains("content") ? m["content"] : Json(), i);
    if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) out["reasoning_content"] = m["reasoning_content"];
    if (has_calls) {
      if (!m["tool_calls"].is_array()) bad_request(param + ".tool_calls", "'tool_calls' must be a list");
      OJson calls = OJson::array();
      for (const Json& c : m["tool_calls"]) {
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object() ||
            !c["function"].contains("name") || !c["function"]["name"].is_string()) {
          bad_request(param + ".tool_calls", "each tool call needs function.name");
        }
        OJson fn = OJson::object();
        fn["name"] = c["function"]["name"];
        // The Qwen templates expect arguments as an object (they tojson it or iterate it).
        const Json& a = c["function"].contains("arguments") ? c["function"]["arguments"] : Json::object();
        if (a.is_string()) {
          const OJson parsed = OJson::parse(a.get<std::string>(), nullptr, false);
          if (parsed.is_discarded()) bad_request(param + ".tool_calls", "tool call arguments are not valid JSON");
          fn["arguments"] = parsed;
        } else {
          fn["arguments"] = OJson(a);
        }
        OJson call = {{"type", "function"}, {"function", fn}};
        if (c.contains("id")) call["id"] = OJson(c["id"]);
        calls.push_back(call);
      }
      out["tool_calls"] = calls;
    }
    if (m.contains("tool_call_id") && m["tool_call_id"].is_string()) out["tool_call_id"] = m["tool_call_id"];
    if (m.contains("name") && m["name"].is_string()) out["name"] = m["name"];
    r.chat_inputs.messages.push_back(out);
  }
  if (has(body, "tools")) {
    const Json& tools = body["tools"];
    if (!tools.is_array()) bad_request("tools", "'tools' must be a list");
    for (size_t i = 0; i < tools.size(); ++i) {
      const Json& t = tools[i];
      if (!t.is_object() || t.value("type", "") != "function" || !t.contains("function") || !t["function"].is_object() ||
          !t["function"].contains("name") || !t["function"]["name"].is_string()) {
        bad_request(fmt::format("tools[{}]", i), "each tool must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}");
      }
    }
    if (!tools.empty()) {
      r.tools = tools;
      r.chat_inputs.tools = OJson(tools);
    }
  }
  if (has(body, "tool_choice")) {
    const Json& tc = body["tool_choice"];
    if (tc.is_string()) {
      r.tool_choice = tc.get<std::string>();
      if (r.tool_choice != "auto" && r.tool_choice != "none" && r.tool_choice != "required") {
        bad_request("tool_choice", "'tool_choice' must be auto, none, required or a function (got '{}')", r.tool_choice);
      }
    } else if (tc.is_object() && tc.value("type", "") == "function" && tc.contains("function") &&
               tc["function"].is_object() && tc["function"].contains("name") && tc["function"]["name"].is_string()) {
      r.tool_choice = tc["function"]["name"].get<std::string>();
      bool known = false;
      for (const Json& t : r.tools) known = known || t["function"]["name"] == r.tool_choice;
      if (!known) bad_request("tool_choice", "tool_choice names '{}', which is not among the tools", r.tool_choice);
    } else {
      bad_request("tool_choice", "'tool_choice' must be auto, none, required or {{\"type\": \"function\", ...}}");
    }
    if (r.tool_choice != "auto" && r.tool_choice != "none" && r.tools.empty()) {
      bad_request("tool_choice", "tool_choice '{}' needs tools", r.tool_choice);
    }
  }
  if (r.tool_choice == "none") r.chat_inputs.tools = nullptr;  // the model is not shown them
  if (has(body, "logprobs")) r.logprobs = boolean(body, "logprobs");
  if (has(body, "top_logprobs")) {
    if (!r.logprobs) bad_request("top_logprobs", "'top_logprobs' needs logprobs: true");
    r.params.top_logprobs = static_cast<int>(integer(body, "top_logprobs", 0, 20));
  } else if (r.logprobs) {
    r.params.top_logprobs = 0;
  }
  r.chat_inputs.add_generation_prompt = true;
  if (has(body, "chat_template_kwargs")) {
    const Json& kw = body["chat_template_kwargs"];
    if (!kw.is_object()) bad_request("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    for (auto it = kw.begin(); it != kw.end(); ++it) r.chat_inputs.extra[it.key()] = OJson(it.value());
  }
  return r;
}

CompletionRequest parse_completion_request(const Json& body, const RequestLimits& limits, uint64_t seed) {
  CompletionRequest r;
  parse_common(body, limits, seed, r);
  r.params.max_tokens = has(body, "max_tokens") ? r.params.max_tokens : 16;  // OpenAI's default here
  if (!has(body, "prompt")) bad_request("prompt", "'prompt' is required");
  const Json& p = body["prompt"];
  if (p.is_string()) {
    r.prompt_text = p.get<std::string>();
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    for (const Json& t : p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= limits.n_vocab) {
        bad_request("prompt", "prompt token ids must be integers in 0..{}", limits.n_vocab - 1);
      }
      r.prompt_tokens.push_back(t.get<int32_t>());
    }
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    r.prompt_text = p[0].get<std::string>();
  } else if (p.is_array() && p.size() > 1) {
    bad_request("prompt", "several prompts in one request are not supported; send one request each");
  } else {
    bad_request("prompt", "'prompt' must be a string, a list of one string, or a list of token ids");
  }
  if (r.prompt_text.empty() && r.prompt_tokens.empty()) bad_request("prompt", "'prompt' is empty");
  if (has(body, "echo")) r.echo = boolean(body, "echo");
  if (has(body, "logprobs")) {
    const int64_t n = integer(body, "logprobs", 0, 5);
    r.logprobs = true;
    r.params.top_logprobs = static_cast<int>(n);
  }
  return r;
}

}  // namespace tandem::serve
