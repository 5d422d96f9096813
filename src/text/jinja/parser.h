// Recursive-descent parser for jinja2's grammar (the subset chat templates use): the same
// operator precedence, test/filter binding and tag set as jinja2 with the loopcontrols
// extension, plus transformers' {% generation %} tag.
#pragma once

#include <string>
#include <vector>

#include "text/jinja/ast.h"
#include "text/jinja/lexer.h"

namespace tandem::jinja {

// Parses tokens of `source` (for error positions); throws TemplateError on a syntax error.
Body parse(const std::vector<Token>& tokens, const std::string& source, const std::string& where);

}  // namespace tandem::jinja
