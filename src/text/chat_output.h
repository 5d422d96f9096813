// Splits what a chat model wrote into the parts an OpenAI client expects: reasoning (Qwen's
// <think>...</think>), content, and tool calls in both Qwen formats:
//   JSON (Qwen2.5, Qwen3):      <tool_call>{"name": "f", "arguments": {...}}</tool_call>
//   XML (Qwen3-Coder, Qwen3.5): <tool_call><function=f><parameter=k>v</parameter></function></tool_call>
// several per message. XML parameter values become the JSON type the tool's schema gives
// the parameter. Tolerated: a missing <tool_call> opener, a missing closer at the very end,
// whitespace anywhere between tags. A tool call that does not parse stays in the content:
// nothing the model wrote is lost.
//
// For streaming, parse() of a growing text with `final` unset holds back whatever could
// still turn into markup (a partial "<think" or "<tool_call", an unclosed call), so that
// content already sent never has to be taken back.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace tandem::text {

struct ParsedToolCall {
  std::string name;
  std::string arguments;  // a JSON object, serialized
};

struct ParsedChatOutput {
  std::string reasoning;
  std::string content;
  std::vector<ParsedToolCall> tool_calls;
};

struct ChatOutputOptions {
  bool starts_in_reasoning = false;  // the prompt ended inside <think> (the template opened it)
  bool parse_reasoning = true;
  bool parse_tool_calls = false;     // only when the request offered tools
  nlohmann::json tools = nlohmann::json::array();  // the request's tools (for parameter types)
};

ParsedChatOutput parse_chat_output(std::string_view text, const ChatOutputOptions& options, bool final);

}  // namespace tandem::text
