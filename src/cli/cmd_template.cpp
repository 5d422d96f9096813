// `tandem template -m MODEL.gguf [--template FILE.jinja] --messages MSGS.json
//  [--tools TOOLS.json] [--add-generation-prompt] [--var name=json]...`
// Renders a conversation with the model's chat template (or a template file) and prints
// the prompt byte for byte, with no newline added.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "gguf/gguf_model_files.h"
#include "text/chat_template.h"

namespace tandem::cli {
namespace {

using json = nlohmann::ordered_json;

struct TemplateArgs {
  std::string model;
  std::string template_file;
  std::string messages_file;
  std::string tools_file;
  bool add_generation_prompt = false;
  std::vector<std::string> vars;
};

// Parses JSON text; errors name the source and the line:column of the problem.
json parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    size_t line = 1, column = 1;
    for (size_t k = 0; k + 1 < e.byte && k < text.size(); ++k) {
      if (text[k] == '\n') {
        ++line;
        column = 1;
      } else if ((static_cast<unsigned char>(text[k]) & 0xc0) != 0x80) {
        ++column;
      }
    }
    std::string reason = e.what();
    const size_t p = reason.find("error: ");
    if (p != std::string::npos) reason = reason.substr(p + 7);
    fail("{}: invalid JSON at line {}, column {} (byte {}): {}", what, line, column, e.byte, reason);
  }
}

// The checks transformers' callers rely on: a list of objects with a string role.
void check_messages(const json& messages, const std::string& what) {
  if (!messages.is_array()) fail("{}: expected a JSON array of messages (or an object with \"messages\"), got {}", what, messages.type_name());
  for (size_t k = 0; k < messages.size(); ++k) {
    const json& m = messages[k];
    if (!m.is_object()) fail("{}: messages[{}]: expected an object, got {}", what, k, m.type_name());
    if (!m.contains("role")) fail("{}: messages[{}]: missing \"role\"", what, k);
    if (!m["role"].is_string()) fail("{}: messages[{}].role: expected a string, got {}", what, k, m["role"].type_name());
  }
}

void run_template(const TemplateArgs& args) {
  std::optional<gguf::ModelFiles> model;
  if (!args.model.empty()) model.emplace(gguf::ModelFiles::open(args.model));
  if (!model && args.template_file.empty()) fail("give a model (-m) or a template file (--template)");
  const gguf::File* file = model ? &model->primary() : nullptr;
  const text::ChatTemplate tmpl =
      args.template_file.empty() ? text::ChatTemplate::from_gguf(*file) : text::ChatTemplate::from_file(args.template_file, file);

  text::ChatInputs inputs;
  json doc = parse_json(read_text_file(args.messages_file, "--messages"), args.messages_file);
  // A conversation file may bundle its tools: {"messages": [...], "tools": [...]}.
  if (doc.is_object() && doc.contains("messages")) {
    if (doc.contains("tools")) inputs.tools = doc["tools"];
    if (doc.contains("documents")) inputs.documents = doc["documents"];
    doc = json(doc["messages"]);
  }
  check_messages(doc, args.messages_file);
  inputs.messages = std::move(doc);
  if (!args.tools_file.empty()) {
    inputs.tools = parse_json(read_text_file(args.tools_file, "--tools"), args.tools_file);
    if (!inputs.tools.is_array() && !inputs.tools.is_null())
      fail("{}: expected a JSON array of tools, got {}", args.tools_file, inputs.tools.type_name());
  }
  inputs.add_generation_prompt = args.add_generation_prompt;
  for (const auto& var : args.vars) {
    const size_t eq = var.find('=');
    if (eq == std::string::npos || eq == 0) fail("--var {}: expected name=json, e.g. enable_thinking=false", var);
    const std::string name = var.substr(0, eq);
    inputs.extra[name] = parse_json(var.substr(eq + 1), "--var " + name);
  }
  const std::string prompt = tmpl.render(inputs);
  if (std::fwrite(prompt.data(), 1, prompt.size(), stdout) != prompt.size()) fail("writing the prompt to stdout failed");
  std::fflush(stdout);
}

}  // namespace

void register_template(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("template", "Render a conversation with a chat template (byte-exact, no newline added)");
  auto args = std::make_shared<TemplateArgs>();
  cmd->add_option("-m,--model", args->model, "GGUF model: its tokenizer.chat_template and bos/eos token strings");
  cmd->add_option("--template", args->template_file, "Jinja template file to use instead of the model's");
  cmd->add_option("--messages", args->messages_file, "JSON array of messages, or {\"messages\": [...], \"tools\": [...]}")->required();
  cmd->add_option("--tools", args->tools_file, "JSON array of tool definitions");
  cmd->add_flag("--add-generation-prompt", args->add_generation_prompt, "End with the assistant turn header");
  cmd->add_option("--var", args->vars, "Extra template variable as name=json (e.g. enable_thinking=false); repeatable");
  cmd->callback([args] { run_template(*args); });
}

}  // namespace tandem::cli
