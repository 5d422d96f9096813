// libFuzzer target: the server's two parsers of untrusted text. The bytes are (1) an
// OpenAI request body, checked by the chat and completion request parsers: only clean
// tandem::Error failures (400s) are allowed; and (2) a model's output, split into
// reasoning, content and tool calls: besides not crashing, every non-final parse of a
// prefix must be a prefix of the final parse (what streaming relies on).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.h"
#include "serve/openai_request.h"
#include "text/chat_output.h"

namespace {

const tandem::text::ChatOutputOptions& output_options() {
  static const tandem::text::ChatOutputOptions o = [] {
    tandem::text::ChatOutputOptions x;
    x.parse_tool_calls = true;
    x.tools = nlohmann::json::parse(R"([{"type":"function","function":{"name":"f","parameters":{"type":"object",
      "properties":{"a":{"type":"integer"},"s":{"type":"string"},"b":{"type":"boolean"}}}}}])");
    return x;
  }();
  return o;
}

bool is_prefix(const std::string& p, const std::string& of) { return of.compare(0, p.size(), p) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const nlohmann::json body = nlohmann::json::parse(text, nullptr, false);
  if (!body.is_discarded()) {
    const tandem::serve::RequestLimits limits{1000, 4096};
    try {
      (void)tandem::serve::parse_chat_request(body, limits, 1);
    } catch (const tandem::Error&) {
    }
    try {
      (void)tandem::serve::parse_completion_request(body, limits, 1);
    } catch (const tandem::Error&) {
    }
  }

  for (bool reasoning : {false, true}) {
    tandem::text::ChatOutputOptions o = output_options();
    o.starts_in_reasoning = reasoning;
    const tandem::text::ParsedChatOutput final_parse = tandem::text::parse_chat_output(text, o, true);
    // A few prefixes (every one would make long inputs slow).
    for (size_t n : {size / 4, size / 2, size - size / 4, size > 0 ? size - 1 : 0}) {
      const tandem::text::ParsedChatOutput p = tandem::text::parse_chat_output(text.substr(0, n), o, false);
      if (!is_prefix(p.content, final_parse.content) || !is_prefix(p.reasoning, final_parse.reasoning) ||
          p.tool_calls.size() > final_parse.tool_calls.size()) {
        __builtin_trap();  // streamed text would have to be taken back
      }
    }
  }
  return 0;
}
