// Chat templates: renders a conversation into the prompt text exactly as transformers'
// apply_chat_template does with Python jinja2 (same variables, same globals, same tojson).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "text/jinja/template.h"

namespace tandem::gguf {
class File;
}

namespace tandem::text {

// ordered_json: templates print objects (tools, arguments) in their original key order.
struct ChatInputs {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();  // [{role, content, tool_calls, ...}]
  nlohmann::ordered_json tools;                                       // null when the request has none
  nlohmann::ordered_json documents;                                   // null when none
  bool add_generation_prompt = false;
  // Extra template variables (enable_thinking, reasoning_effort, ...); they override the
  // special-token strings, as template kwargs do in transformers.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

class ChatTemplate {
 public:
  // `bos_token`/`eos_token` are the token strings the template sees; empty means the
  // variable is left undefined (as transformers does for a tokenizer without one).
  ChatTemplate(std::string source, std::string name, std::string bos_token, std::string eos_token);

  // The template in `tokenizer.chat_template`, bos/eos strings from the vocabulary.
  static ChatTemplate from_gguf(const gguf::File& file);
  // A template file; bos/eos strings from `file` when given.
  static ChatTemplate from_file(const std::filesystem::path& path, const gguf::File* file);

  // Throws tandem::Error (a jinja::TemplateError with line:column for template errors,
  // including the template's own raise_exception()).
  std::string render(const ChatInputs& inputs, const jinja::RenderLimits& limits = {}) const;

  // How the template writes tool calls into assistant turns (and so how its model writes
  // them): Qwen3-Coder/Qwen3.5's XML form (<function=NAME>) or the JSON form in <tool_call>.
  bool xml_tool_calls() const { return xml_tool_calls_; }

  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

 private:
  jinja::Template template_;
  std::string bos_, eos_;
  bool xml_tool_calls_ = false;
};

// The globals transformers adds: raise_exception(message) and strftime_now(format).
jinja::Variables chat_template_globals();

}  // namespace tandem::text
