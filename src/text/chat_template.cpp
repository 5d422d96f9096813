#include "text/chat_template.h"

#include <ctime>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "gguf/gguf_file.h"

namespace tandem::text {

using jinja::CallArgs;
using jinja::Interpreter;
using jinja::RuntimeError;
using jinja::Value;

jinja::Variables chat_template_globals() {
  jinja::Variables g;
  g.emplace_back("raise_exception", Value::function("raise_exception", [](Interpreter&, CallArgs& args) -> Value {
    const std::string message = args.positional.empty() ? std::string() : jinja::to_str(args.positional[0]);
    throw RuntimeError("template raised an error: " + message);
  }));
  g.emplace_back("strftime_now", Value::function("strftime_now", [](Interpreter&, CallArgs& args) -> Value {
    if (args.positional.size() != 1 || !args.positional[0].is_string()) throw RuntimeError("strftime_now() takes one format string");
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buf[512];
    const size_t n = std::strftime(buf, sizeof buf, args.positional[0].str().c_str(), &local);
    if (n == 0 && !args.positional[0].str().empty()) throw RuntimeError("strftime_now(): format too long or empty result");
    return Value::string(std::string(buf, n));
  }));
  return g;
}

ChatTemplate::ChatTemplate(std::string source, std::string name, std::string bos_token, std::string eos_token)
    : template_(jinja::Template::parse(source, std::move(name))),
      bos_(std::move(bos_token)),
      eos_(std::move(eos_token)),
      xml_tool_calls_(source.find("<function=") != std::string::npos) {}

namespace {

std::string token_string(const gguf::File& file, const char* id_key) {
  if (!file.contains(id_key) || !file.contains("tokenizer.ggml.tokens")) return "";
  const uint64_t id = file.get_uint(id_key);
  const auto& tokens = file.get_array<std::string>("tokenizer.ggml.tokens");
  if (id >= tokens.size()) fail("{}: {} = {} is outside the vocabulary ({} tokens)", file.name(), id_key, id, tokens.size());
  return tokens[id];
}

}  // namespace

ChatTemplate ChatTemplate::from_gguf(const gguf::File& file) {
  if (!file.contains("tokenizer.chat_template"))
    fail("{}: the model has no chat template (metadata key tokenizer.chat_template); pass one with --template", file.name());
  return ChatTemplate(file.get<std::string>("tokenizer.chat_template"), file.name() + ":tokenizer.chat_template",
                      token_string(file, "tokenizer.ggml.bos_token_id"), token_string(file, "tokenizer.ggml.eos_token_id"));
}

ChatTemplate ChatTemplate::from_file(const std::filesystem::path& path, const gguf::File* file) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open template file", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return ChatTemplate(text.str(), path.string(), file ? token_string(*file, "tokenizer.ggml.bos_token_id") : "",
                      file ? token_string(*file, "tokenizer.ggml.eos_token_id") : "");
}

std::string ChatTemplate::render(const ChatInputs& inputs, const jinja::RenderLimits& limits) const {
  auto convert = [](const nlohmann::ordered_json& j, const char* what) {
    try {
      return Value::from_json(j);
    } catch (const std::exception& e) {
      fail("{}: {}", what, e.what());
    }
  };
  if (!inputs.messages.is_array()) fail("messages must be a JSON array, got {}", inputs.messages.type_name());
  if (!inputs.extra.is_object()) fail("extra template variables must be a JSON object");
  // Same variables and order as transformers: messages, tools, documents,
  // add_generation_prompt, then special tokens, then the caller's kwargs.
  jinja::Variables vars;
  vars.emplace_back("messages", convert(inputs.messages, "messages"));
  vars.emplace_back("tools", convert(inputs.tools, "tools"));
  vars.emplace_back("documents", convert(inputs.documents, "documents"));
  vars.emplace_back("add_generation_prompt", Value::boolean(inputs.add_generation_prompt));
  if (!bos_.empty()) vars.emplace_back("bos_token", Value::string(bos_));
  if (!eos_.empty()) vars.emplace_back("eos_token", Value::string(eos_));
  for (const auto& [k, v] : inputs.extra.items()) vars.emplace_back(k, convert(v, k.c_str()));
  return template_.render(vars, chat_template_globals(), limits);
}

}  // namespace tandem::text
