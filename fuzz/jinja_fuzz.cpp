// libFuzzer target: arbitrary bytes as a chat template, parsed and rendered against a
// small fixed conversation. Only clean tandem::Error failures are allowed; tight limits
// keep every input fast (steps, output size, call depth, range length).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "text/chat_template.h"

namespace {

const tandem::text::ChatInputs& inputs() {
  static const tandem::text::ChatInputs in = [] {
    tandem::text::ChatInputs i;
    i.messages = nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "sys"},
      {"role": "user", "content": "héllo <b> \"q\""},
      {"role": "assistant", "content": "<think>r</think>ok", "reasoning_content": "r",
       "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1, "b": [1.5, null]}}}]},
      {"role": "tool", "content": "42"},
      {"role": "user", "content": [{"type": "text", "text": "part"}]}])");
    i.tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}])");
    i.add_generation_prompt = true;
    i.extra["enable_thinking"] = false;
    return i;
  }();
  return in;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  tandem::jinja::RenderLimits limits;
  limits.max_steps = 200'000;
  limits.max_output = 1 << 20;
  limits.max_call_depth = 64;
  limits.max_range = 1000;
  try {
    tandem::text::ChatTemplate t(std::string(reinterpret_cast<const char*>(data), size), "fuzz", "<s>", "</s>");
    (void)t.render(inputs(), limits);
  } catch (const tandem::Error&) {
    // Clean, positioned errors are the expected outcome for most inputs.
  }
  return 0;
}
