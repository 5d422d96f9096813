// What an OpenAI-style request asks for in structured output, as GBNF:
//  - response_format {"type": "json_object"} (any JSON object) or {"type": "json_schema",
//    "json_schema": {"schema": ..., "strict": ...}};
//  - a forced tool call (tool_choice "required" or a named function): the text the answer
//    starts with, in the template's own tool-call form, and the grammar of the rest: the
//    function's name (one of the tools) and arguments that satisfy its `parameters` schema,
//    then the closing tags. One call per answer.
//      JSON form (Qwen2.5/Qwen3):  <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
//      XML form (Qwen3-Coder/3.5): <tool_call>\n<function=f>\n<parameter=k>\nv\n</parameter>\n
//                                  </function>\n</tool_call>
//    In the XML form a string parameter is raw text without '<' (its enum or format is kept,
//    a pattern or length is not); other types are JSON of their schema.
// Errors are tandem::Error naming the problem (the server answers 400).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tandem::grammar {

// GBNF for a response_format object; empty for {"type": "text"}.
std::string response_format_gbnf(const nlohmann::ordered_json& response_format);

struct ToolCallConstraint {
  std::string prefix;  // the answer's first text (already in the prompt)
  std::string gbnf;    // what may follow it
};
// `choice`: "required" or a function's name.
ToolCallConstraint tool_call_constraint(const nlohmann::ordered_json& tools, const std::string& choice, bool xml_form);

// Whether a rendered prompt leaves a reasoning model inside <think> (the template opened
// it, as Qwen3.5's does): then a grammar applies only after the model's </think>.
bool ends_inside_think(std::string_view prompt_text);

}  // namespace tandem::grammar
