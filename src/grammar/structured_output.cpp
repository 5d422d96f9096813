#include "grammar/structured_output.h"

#include <functional>
#include <map>
#include <set>

#include <fmt/ranges.h>

#include "core/error.h"
#include "grammar/json_schema.h"

namespace tandem::grammar {
namespace {

using Json = nlohmann::ordered_json;

const Json* find_tool(const Json& tools, const std::string& name) {
  for (const Json& t : tools) {
    if (t.is_object() && t.contains("function") && t["function"].is_object() && t["function"].value("name", "") == name) {
      return &t["function"];
    }
  }
  return nullptr;
}

Json parameters_of(const Json& function) {
  if (!function.contains("parameters") || function["parameters"].is_null()) return Json{{"type", "object"}};
  return function["parameters"];
}

// The XML form's parameters: <parameter=k>\nvalue\n</parameter>\n for each property, in the
// schema's order, optional ones possibly left out.
std::string xml_parameters(SchemaCompiler& c, const Json& schema, const std::string& fname) {
  if (!schema.is_object()) fail("the parameters of '{}' must be a JSON Schema object", fname);
  const std::string text = c.rule("xml-text", "[^<]*");
  const Json props = schema.value("properties", Json::object());
  std::set<std::string> required;
  for (const Json& r : schema.value("required", Json::array())) {
    if (r.is_string()) required.insert(r.get<std::string>());
  }
  if (props.empty()) {
    // Any parameters at all (an object schema without properties).
    return c.rule(fname + "-params", R"(("<parameter=" [^>\n<]+ ">\n" )" + text + R"( "\n</parameter>\n")*)");
  }
  struct Param {
    std::string piece;
    bool required;
  };
  std::vector<Param> params;
  for (auto it = props.begin(); it != props.end(); ++it) {
    const Json& p = it.value();
    std::string value;
    const Json type = p.is_object() && p.contains("type") ? p["type"] : Json();
    const bool raw = (type.is_string() && type == "string") || (type.is_array() && !type.empty() && type[0] == "string");
    if (raw) {
      // Raw text, as the template prints strings (the output parser keeps it as is).
      if (p.contains("enum") && p["enum"].is_array()) {
        std::vector<std::string> alts;
        for (const Json& v : p["enum"]) alts.push_back(gbnf_literal(v.is_string() ? v.get<std::string>() : v.dump()));
        value = "(" + fmt::format("{}", fmt::join(alts, " | ")) + ")";
      } else if (p.contains("const")) {
        value = gbnf_literal(p["const"].is_string() ? p["const"].get<std::string>() : p["const"].dump());
      } else if (p.contains("format") && p["format"].is_string()) {
        const std::string f = p["format"].get<std::string>();
        if (f != "date" && f != "time" && f != "date-time" && f != "uuid" && f != "email" && f != "ipv4") {
          fail("unsupported format '{}' for parameter '{}' of '{}'", f, it.key(), fname);
        }
        value = c.primitive(f);
      } else {
        value = text;
      }
    } else {
      value = c.add(p, schema, fname + "-" + it.key());
    }
    params.push_back({gbnf_literal("<parameter=" + it.key() + ">\n") + " " + value + " " + gbnf_literal("\n</parameter>\n"),
                      required.count(it.key()) > 0});
  }
  // rest(i): the parameters from i on.
  std::map<size_t, std::string> memo;
  std::function<std::string(size_t)> rest = [&](size_t i) -> std::string {
    if (i == params.size()) return "";
    auto it = memo.find(i);
    if (it != memo.end()) return it->second;
    const std::string item = params[i].piece + " " + rest(i + 1);
    const std::string body = params[i].required ? item : "(" + item + " | " + rest(i + 1) + ")";
    return memo[i] = c.rule(fmt::format("{}-params-{}", fname, i), body);
  };
  return rest(0);
}

}  // namespace

std::string response_format_gbnf(const Json& rf) {
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string()) {
    fail("'response_format' must be an object with a 'type' (text, json_object or json_schema)");
  }
  const std::string type = rf["type"].get<std::string>();
  if (type == "text") return {};
  if (type == "json_object") {
    // As OpenAI: any JSON object, unless a schema rides along (llama-server accepts one here).
    if (rf.contains("schema")) return json_schema_to_gbnf(rf["schema"]);
    SchemaCompiler c;
    return c.gbnf(c.any_object());
  }
  if (type == "json_schema") {
    if (!rf.contains("json_schema") || !rf["json_schema"].is_object()) {
      fail("'response_format' of type json_schema needs a 'json_schema' object");
    }
    const Json& js = rf["json_schema"];
    if (js.contains("strict") && !js["strict"].is_boolean() && !js["strict"].is_null()) {
      fail("'response_format.json_schema.strict' must be true or false");
    }
    // strict or not, the schema is enforced: a constrained model loses nothing by it.
    if (!js.contains("schema")) return response_format_gbnf(Json{{"type", "json_object"}});
    return json_schema_to_gbnf(js["schema"]);
  }
  fail("'response_format.type' must be text, json_object or json_schema (got '{}')", type);
}

ToolCallConstraint tool_call_constraint(const Json& tools, const std::string& choice, bool xml_form) {
  std::vector<const Json*> functions;
  if (choice == "required") {
    for (const Json& t : tools) {
      if (t.is_object() && t.contains("function") && t["function"].is_object()) functions.push_back(&t["function"]);
    }
  } else if (const Json* f = find_tool(tools, choice)) {
    functions.push_back(f);
  } else {
    fail("tool_choice names '{}', which is not among the tools", choice);
  }
  if (functions.empty()) fail("tool_choice '{}' needs tools", choice);
  SchemaCompiler c;
  ToolCallConstraint out;
  const bool named = choice != "required";
  std::vector<std::string> calls;
  for (const Json* f : functions) {
    const std::string name = f->value("name", "");
    const Json params = parameters_of(*f);
    std::string body;
    if (xml_form) {
      body = xml_parameters(c, params, name) + " " + gbnf_literal("</function>\n</tool_call>");
      if (!named) body = gbnf_literal(name + ">\n") + " " + body;
    } else {
      const std::string args = c.add(params, params, name + "-arguments");
      body = args + " " + gbnf_literal("}\n</tool_call>");
      // after {"name": " : the name with its closing quote
      if (!named) body = gbnf_literal(Json(name).dump().substr(1) + ", \"arguments\": ") + " " + body;
    }
    calls.push_back(body);
  }
  if (xml_form) {
    out.prefix = named ? "<tool_call>\n<function=" + choice + ">\n" : "<tool_call>\n<function=";
  } else {
    out.prefix = named ? "<tool_call>\n{\"name\": " + Json(choice).dump() + ", \"arguments\": " : "<tool_call>\n{\"name\": \"";
  }
  out.gbnf = c.gbnf(calls.size() == 1 ? calls[0] : "(" + fmt::format("{}", fmt::join(calls, " | ")) + ")");
  return out;
}

bool ends_inside_think(std::string_view prompt_text) {
  const size_t last = prompt_text.find_last_not_of(" \n");
  return last != std::string_view::npos && prompt_text.substr(0, last + 1).ends_with("<think>");
}

}  // namespace tandem::grammar
