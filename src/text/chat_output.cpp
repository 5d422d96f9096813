#include "text/chat_output.h"

#include <algorithm>
#include <cctype>

namespace tandem::text {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kThinkOpen = "<think>", kThinkClose = "</think>";
constexpr std::string_view kCallOpen = "<tool_call>", kCallClose = "</tool_call>";
constexpr std::string_view kFunctionOpen = "<function=", kFunctionClose = "</function>";
constexpr std::string_view kParamOpen = "<parameter=", kParamClose = "</parameter>";

// Serialized JSON; text that is not valid UTF-8 (a model can write any bytes) is replaced,
// never an exception.
std::string json_text(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Length of the longest suffix of `text` that is a proper prefix of `marker`.
size_t partial_suffix(std::string_view text, std::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

// The schema type of a tool's parameter ("string", "integer", ...; empty when unknown).
std::string parameter_type(const Json& tools, const std::string& function, const std::string& param) {
  for (const Json& t : tools) {
    const Json* f = t.is_object() && t.contains("function") ? &t["function"] : nullptr;
    if (f == nullptr || !f->is_object() || f->value("name", "") != function) continue;
    const Json params = f->value("parameters", Json::object());
    if (!params.is_object() || !params.contains("properties") || !params["properties"].is_object()) return {};
    const Json& props = params["properties"];
    if (!props.contains(param) || !props[param].is_object()) return {};
    const Json& type = props[param].contains("type") ? props[param]["type"] : Json();
    if (type.is_string()) return type.get<std::string>();
    if (type.is_array() && !type.empty() && type[0].is_string()) return type[0].get<std::string>();
    return {};
  }
  return {};
}

// A value written between <parameter=k> tags, converted to the declared type.
Json parameter_value(std::string_view raw, const std::string& type) {
  // The Qwen templates put the value on its own lines: drop one newline on each side.
  if (!raw.empty() && raw.front() == '\n') raw.remove_prefix(1);
  if (!raw.empty() && raw.back() == '\n') raw.remove_suffix(1);
  if (type == "string") return std::string(raw);
  const std::string_view t = trim(raw);
  // The Qwen3.5 template prints booleans the Python way, so the model writes them so too.
  if (type == "boolean" && (t == "True" || t == "False")) return t == "True";
  if (t == "None" && (type.empty() || type == "null")) return nullptr;
  Json parsed = Json::parse(t.begin(), t.end(), nullptr, false);
  if (parsed.is_discarded()) return std::string(raw);
  if (type.empty()) return parsed;
  const bool fits = (type == "integer" && parsed.is_number_integer()) || (type == "number" && parsed.is_number()) ||
                    (type == "boolean" && parsed.is_boolean()) || (type == "object" && parsed.is_object()) ||
                    (type == "array" && parsed.is_array()) || (type == "null" && parsed.is_null());
  return fits ? parsed : Json(std::string(raw));
}

// <function=NAME> <parameter=K>V</parameter>... </function>. Returns false if malformed.
bool parse_xml_call(std::string_view body, const Json& tools, ParsedToolCall& out) {
  body = trim(body);
  if (body.substr(0, kFunctionOpen.size()) != kFunctionOpen) return false;
  const size_t name_end = body.find('>');
  if (name_end == std::string_view::npos) return false;
  const std::string name(trim(body.substr(kFunctionOpen.size(), name_end - kFunctionOpen.size())));
  if (name.empty()) return false;
  std::string_view rest = body.substr(name_end + 1);
  const size_t fclose = rest.rfind(kFunctionClose);
  if (fclose != std::string_view::npos) {
    if (!trim(rest.substr(fclose + kFunctionClose.size())).empty()) return false;
    rest = rest.substr(0, fclose);
  }
  Json args = Json::object();
  for (;;) {
    rest = trim(rest);
    if (rest.empty()) break;
    if (rest.substr(0, kParamOpen.size()) != kParamOpen) return false;
    const size_t key_end = rest.find('>');
    if (key_end == std::string_view::npos) return false;
    std::string key(trim(rest.substr(kParamOpen.size(), key_end - kParamOpen.size())));
    rest = rest.substr(key_end + 1);
    // <parameter=city="Paris"> (an attribute-style slip of small models): the value is inline.
    if (const size_t eq = key.find('='); eq != std::string::npos) {
      std::string_view inline_value = trim(std::string_view(key).substr(eq + 1));
      if (inline_value.size() >= 2 && (inline_value.front() == '"' || inline_value.front() == '\'') &&
          inline_value.back() == inline_value.front()) {
        inline_value = inline_value.substr(1, inline_value.size() - 2);
      }
      const std::string value(inline_value);
      key = std::string(trim(std::string_view(key).substr(0, eq)));
      if (key.empty()) return false;
      args[key] = parameter_value(value, parameter_type(tools, name, key));
      // Whatever follows up to the next tag belongs to no parameter: it must be blank.
      const size_t next_tag = rest.find('<');
      if (!trim(rest.substr(0, next_tag)).empty()) return false;
      if (rest.substr(next_tag == std::string_view::npos ? rest.size() : next_tag, kParamClose.size()) == kParamClose) {
        rest = rest.substr(next_tag + kParamClose.size());
      } else {
        rest = next_tag == std::string_view::npos ? std::string_view() : rest.substr(next_tag);
      }
      continue;
    }
    size_t vend = rest.find(kParamClose);
    size_t next = vend == std::string_view::npos ? std::string_view::npos : vend + kParamClose.size();
    if (vend == std::string_view::npos) {
      // A missing </parameter>: the value runs to the next parameter or the end.
      vend = rest.find(kParamOpen);
      next = vend;
      if (vend == std::string_view::npos) vend = next = rest.size();
    }
    if (key.empty()) return false;
    args[key] = parameter_value(rest.substr(0, vend), parameter_type(tools, name, key));
    rest = rest.substr(next);
  }
  out.name = name;
  out.arguments = json_text(args);
  return true;
}

// {"name": ..., "arguments": {...} | "..."}. Returns false if malformed.
bool parse_json_call(std::string_view body, ParsedToolCall& out) {
  body = trim(body);
  const Json j = Json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
  out.name = j["name"].get<std::string>();
  const Json args = j.contains("arguments") ? j["arguments"] : j.value("parameters", Json::object());
  if (args.is_string()) {
    const std::string s = args.get<std::string>();
    const Json inner = Json::parse(s, nullptr, false);
    out.arguments = inner.is_object() ? json_text(inner) : s;
  } else if (args.is_object()) {
    out.arguments = json_text(args);
  } else if (args.is_null()) {
    out.arguments = "{}";
  } else {
    return false;
  }
  return !out.name.empty();
}

bool offered(const Json& tools, const std::string& name) {
  for (const Json& t : tools) {
    if (t.is_object() && t.contains("function") && t["function"].is_object() && t["function"].value("name", "") == name) {
      return true;
    }
  }
  return false;
}

// A call naming a tool the request did not offer (a template's example name, a guess) is
// not a call: it stays content.
bool parse_call(std::string_view body, const Json& tools, ParsedToolCall& out) {
  const std::string_view t = trim(body);
  const bool ok = t.substr(0, kFunctionOpen.size()) == kFunctionOpen ? parse_xml_call(t, tools, out)
                                                                      : parse_json_call(t, out);
  return ok && offered(tools, out.name);
}

constexpr std::string_view kBareJson = "{\"name\"";

// The language of a fence that may hold JSON calls: none, or json in any case.
bool json_fence(std::string_view language) {
  language = trim(language);
  if (language.empty()) return true;
  if (language.size() != 4) return false;
  for (size_t i = 0; i < 4; ++i) {
    if (std::tolower(static_cast<unsigned char>(language[i])) != "json"[i]) return false;
  }
  return true;
}

// An answer that is nothing but one or more {"name": ..., "arguments": ...} objects naming
// offered tools, without <tool_call> tags (small Qwen models often write calls so).
bool bare_json_calls(std::string_view s, const Json& tools, std::vector<ParsedToolCall>& out) {
  std::vector<ParsedToolCall> calls;
  s = trim(s);
  // A Markdown code fence around the whole answer (```json ... ```) is the same answer.
  if (s.substr(0, 3) == "```" && s.size() > 6 && s.substr(s.size() - 3) == "```") {
    const size_t body = s.find('\n');
    if (body == std::string_view::npos || body + 1 > s.size() - 3 || !json_fence(s.substr(3, body - 3))) return false;
    s = trim(s.substr(body + 1, s.size() - 3 - (body + 1)));
  }
  if (s.empty() || s.front() != '{') return false;
  while (!s.empty()) {
    // The end of this object: try each closing brace until one parses.
    size_t end = std::string_view::npos;
    ParsedToolCall call;
    for (size_t close = s.find('}'); close != std::string_view::npos; close = s.find('}', close + 1)) {
      if (parse_json_call(s.substr(0, close + 1), call)) {
        end = close + 1;
        break;
      }
    }
    if (end == std::string_view::npos || !offered(tools, call.name)) return false;
    calls.push_back(std::move(call));
    s = trim(s.substr(end));
  }
  out = std::move(calls);
  return true;
}

// Whether an answer that begins with `s` could still turn out to be bare JSON calls: a `{`
// (perhaps inside a ```json fence) followed by "name", or too little to tell yet.
bool could_be_bare_call(std::string_view s) {
  std::string_view t = trim(s);
  if (t.size() < 3 && std::string_view("```").substr(0, t.size()) == t && !t.empty()) return true;
  if (t.substr(0, 3) == "```") {
    const size_t nl = t.find('\n');
    if (nl == std::string_view::npos) {
      // "```", "```js": the fence's language is still being written; only json (or none) may come.
      const std::string_view typed = trim(t.substr(3));
      if (typed.size() > 4) return false;
      for (size_t i = 0; i < typed.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(typed[i])) != "json"[i]) return false;
      }
      return true;
    }
    if (!json_fence(t.substr(3, nl - 3))) return false;
    t = trim(t.substr(nl + 1));
  }
  if (t.empty()) return true;
  if (t.front() != '{') return false;
  const std::string_view u = trim(t.substr(1));
  constexpr std::string_view kName = "\"name\"";
  return u.size() <= kName.size() ? kName.substr(0, u.size()) == u : u.substr(0, kName.size()) == kName;
}

// Where the next tool call starts in `s` from `from`: "<tool_call>", or (no opener)
// "<function=" / a JSON object with "name" that is followed by a closer.
size_t next_call_start(std::string_view s, size_t from, bool& has_opener) {
  const size_t a = s.find(kCallOpen, from);
  const size_t b = s.find(kFunctionOpen, from);
  size_t c = std::string_view::npos;
  // A bare JSON call is recognised only when a </tool_call> follows it.
  const size_t close = s.find(kCallClose, from);
  if (close != std::string_view::npos) {
    const size_t brace = s.find("{\"name\"", from);
    if (brace != std::string_view::npos && brace < close) c = brace;
  }
  size_t best = std::min({a, b, c});
  has_opener = best != std::string_view::npos && best == a;
  return best;
}

void parse_content(std::string_view s, const ChatOutputOptions& o, bool final, ParsedChatOutput& out) {
  if (!o.parse_tool_calls) {
    out.content.append(s);
    return;
  }
  size_t at = 0;
  for (;;) {
    bool opener = false;
    const size_t start = next_call_start(s, at, opener);
    if (start == std::string_view::npos) {
      std::string_view tail = s.substr(at);
      if (!final && at == 0 && out.tool_calls.empty() && could_be_bare_call(tail)) {
        return;  // the whole answer may yet be a call without tags: hold it to the end
      }
      if (!final) {
        const size_t bare = tail.find(kBareJson);
        const size_t hold = std::max({partial_suffix(tail, kCallOpen), partial_suffix(tail, kFunctionOpen),
                                      partial_suffix(tail, kBareJson),
                                      bare != std::string_view::npos ? tail.size() - bare : size_t{0}});
        tail.remove_suffix(hold);
      } else if (at == 0 && out.tool_calls.empty() && bare_json_calls(tail, o.tools, out.tool_calls)) {
        return;  // the whole answer was JSON calls without tags
      }
      out.content.append(tail);
      return;
    }
    const std::string_view before = s.substr(at, start - at);
    const size_t body_begin = start + (opener ? kCallOpen.size() : 0);
    size_t close = s.find(kCallClose, body_begin);
    // Without a closer the call may still be arriving (streaming), or was cut off (final).
    if (close == std::string_view::npos && !final) {
      // A closer still to come would make a bare {"name" before this call a call too.
      const size_t bare = before.find(kBareJson);
      out.content.append(bare == std::string_view::npos ? before : before.substr(0, bare));
      return;
    }
    // A call without an opener whose next call starts before its closer: end it there.
    bool next_opener = false;
    const size_t next = next_call_start(s, body_begin + 1, next_opener);
    if (next != std::string_view::npos && (close == std::string_view::npos || next < close) && !opener) close = next;
    const size_t body_end = close == std::string_view::npos ? s.size() : close;
    ParsedToolCall call;
    if (parse_call(s.substr(body_begin, body_end - body_begin), o.tools, call)) {
      out.content.append(before);
      out.tool_calls.push_back(std::move(call));
    } else {
      // Not a call after all: keep every byte as content.
      out.content.append(s.substr(at, body_end - at));
      if (close != std::string_view::npos && close == s.find(kCallClose, body_begin)) out.content.append(kCallClose);
    }
    at = close == std::string_view::npos ? s.size()
         : (s.substr(close, kCallClose.size()) == kCallClose ? close + kCallClose.size() : close);
  }
}

}  // namespace

ParsedChatOutput parse_chat_output(std::string_view text, const ChatOutputOptions& o, bool final) {
  ParsedChatOutput out;
  std::string_view rest = text;
  if (o.parse_reasoning) {
    bool in_reasoning = o.starts_in_reasoning;
    if (!in_reasoning) {
      const std::string_view lead = trim(rest);
      if (lead.substr(0, kThinkOpen.size()) == kThinkOpen) {
        rest = rest.substr(rest.find(kThinkOpen) + kThinkOpen.size());
        in_reasoning = true;
      } else if (!final && kThinkOpen.substr(0, lead.size()) == lead) {
        return out;  // "<thi" so far: wait
      }
    }
    if (in_reasoning) {
      const size_t close = rest.find(kThinkClose);
      std::string_view r = close == std::string_view::npos ? rest : rest.substr(0, close);
      if (close == std::string_view::npos && !final) r.remove_suffix(partial_suffix(r, kThinkClose));
      // Reasoning conventionally starts and ends with a newline inside the tags.
      while (!r.empty() && r.front() == '\n') r.remove_prefix(1);
      while (!r.empty() && r.back() == '\n') r.remove_suffix(1);
      out.reasoning = std::string(r);
      // Unclosed: everything so far is reasoning (cut off while thinking, or still arriving).
      if (close == std::string_view::npos) return out;
      rest = rest.substr(close + kThinkClose.size());
      // The templates put blank lines after </think>; they are not part of the answer.
      while (!rest.empty() && (rest.front() == '\n' || rest.front() == ' ')) rest.remove_prefix(1);
      if (!final && rest.empty()) return out;
    }
  }
  parse_content(rest, o, final, out);
  return out;
}

}  // namespace tandem::text
