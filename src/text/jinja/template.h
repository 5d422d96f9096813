// A parsed Jinja template, rendered with jinja2's semantics as transformers configures it
// (trim_blocks, lstrip_blocks, loopcontrols, no autoescape, sandboxed: no side effects).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "text/jinja/interpreter.h"
#include "text/jinja/value.h"

namespace tandem::jinja {

using Variables = std::vector<std::pair<std::string, Value>>;

class Template {
 public:
  // Parses `source`; `name` prefixes error positions ("name:line:col: ..."). Throws
  // TemplateError for syntax errors and for unknown filters/tests (as jinja2 does when it
  // compiles, even in branches that never run).
  static Template parse(std::string_view source, std::string name = "template");

  // Renders with the built-in globals (range, namespace, dict), then `globals`, then `vars`
  // (later ones shadow earlier ones). Throws TemplateError with line:column.
  std::string render(const Variables& vars, const Variables& globals = {}, const RenderLimits& limits = {}) const;

  const std::string& name() const { return *name_; }

 private:
  std::shared_ptr<const std::string> name_;
  std::shared_ptr<const std::string> source_;  // normalised as jinja2 does
  std::shared_ptr<const Body> body_;
};

}  // namespace tandem::jinja
