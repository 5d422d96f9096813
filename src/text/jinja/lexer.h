// Splits a template into text and tag tokens, applying jinja2's whitespace rules as
// transformers configures them: trim_blocks, lstrip_blocks, `-`/`+` markers, comments,
// {% raw %}, and the source normalisation jinja2 does first (newlines, one trailing newline).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tandem::jinja {

enum class Tok {
  Text,         // literal template text, whitespace rules already applied
  VarBegin,     // {{
  VarEnd,       // }}
  BlockBegin,   // {%
  BlockEnd,     // %}
  Name,
  String,       // text holds the decoded value
  Integer,
  Float,
  Operator,     // text holds the operator: + - * / // % ** ~ ( ) [ ] { } , . : | = == != < <= > >=
  End,
};

struct Token {
  Tok kind;
  std::string text;
  size_t offset;  // into the normalised source
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// What jinja2 does to a template's source before lexing: every line break (\r\n, \r, and
// the other str.splitlines() separators) becomes \n, and one trailing newline is dropped.
std::string normalize_source(std::string_view source);

// Tokenizes normalised source; throws TemplateError (named `where`) on a lexical error.
std::vector<Token> tokenize(const std::string& source, const std::string& where, const LexerOptions& options);

}  // namespace tandem::jinja
