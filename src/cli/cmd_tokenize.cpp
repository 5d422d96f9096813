// `tandem tokenize -m MODEL.gguf (-p TEXT | -f FILE) [--json] [--no-parse-special] [--no-bos]`:
// the token ids the model's own tokenizer gives for a text, read from the GGUF vocabulary.
#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace tandem::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string prompt;
  std::string file;
  bool json = false;
  bool parse_special = true;  // as llama-tokenize and HF tokenizers: <|im_start|> is one token
  bool no_bos = false;
};

// A piece for the plain listing: quoted, control characters and bytes that are not
// complete UTF-8 escaped, so every line stays one readable line.
std::string quote_piece(const std::string& piece) {
  std::string out = "\"";
  for (size_t pos = 0; pos < piece.size();) {
    const unsigned char c = static_cast<unsigned char>(piece[pos]);
    const size_t n = text::utf8_seq_len(c);
    if (c >= 0x80) {
      const std::string_view seq = std::string_view(piece).substr(pos, n);
      const bool whole = seq.size() == n && n > 1 && text::is_valid_utf8(seq);
      if (whole) out += seq;
      else out += fmt::format("\\x{:02X}", c);
      pos += whole ? n : 1;
      continue;
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02X}", c);
        else out += static_cast<char>(c);
    }
    ++pos;
  }
  return out + "\"";
}

void run_tokenize(const TokenizeArgs& args) {
  const std::string text = args.file.empty() ? args.prompt : read_text_file(args.file, "-f (the text)");
  const text::Tokenizer tokenizer = text::Tokenizer::open(args.model);
  text::EncodeOptions options;
  options.add_special = !args.no_bos;
  options.parse_special = args.parse_special;
  const std::vector<text::TokenId> ids = tokenizer.encode(text, options);
  if (args.json) {
    fmt::print("{}\n", nlohmann::json(ids).dump());
    return;
  }
  for (const text::TokenId id : ids) fmt::print("{}\t{}\n", id, quote_piece(tokenizer.piece(id)));
}

}  // namespace

void register_tokenize(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Print the token ids of a text, as the model's tokenizer (from the GGUF) gives them.\n"
      "Plain output: one token per line, \"ID<TAB>PIECE\", the piece quoted with \\n, \\t,\n"
      "\\r, \\\", \\\\ and \\xNN escapes (bytes that are not complete UTF-8). --json: a JSON\n"
      "array of ids. BOS/EOS are added when the model asks for them\n"
      "(tokenizer.ggml.add_bos_token / add_eos_token) unless --no-bos.");
  auto args = std::make_shared<TokenizeArgs>();
  cmd->add_option("-m,--model", args->model, "GGUF file holding the vocabulary")->required();
  auto* prompt = cmd->add_option("-p,--prompt", args->prompt, "Text to tokenize");
  auto* file = cmd->add_option("-f,--file", args->file, "File whose bytes are the text");
  prompt->excludes(file);
  file->excludes(prompt);
  cmd->add_flag("--json", args->json, "Print a JSON array of ids");
  cmd->add_flag("--parse-special,!--no-parse-special", args->parse_special,
                "Control tokens written in the text (e.g. <|im_start|>) are recognised as the\n"
                "tokens they name (the default, as llama-tokenize and HF tokenizers do);\n"
                "--no-parse-special tokenizes them as plain text");
  cmd->add_flag("--no-bos,--no-add-special", args->no_bos,
                "Do not add the BOS/EOS tokens the model asks for");
  cmd->callback([args, prompt, file] {
    if (prompt->count() == 0 && file->count() == 0) fail("tokenize: give the text with -p TEXT or -f FILE");
    run_tokenize(*args);
  });
}

}  // namespace tandem::cli
