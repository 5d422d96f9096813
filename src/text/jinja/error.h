// Template errors: a tandem::Error whose message names the template and line:column.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace tandem::jinja {

struct SourcePos {
  int line = 1;
  int column = 1;
};

class TemplateError : public Error {
 public:
  TemplateError(const std::string& where, SourcePos pos, const std::string& message)
      : Error(where + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column) + ": " + message),
        pos_(pos),
        reason_(message) {}
  SourcePos pos() const { return pos_; }
  // The message without the location prefix.
  const std::string& reason() const { return reason_; }

 private:
  SourcePos pos_;
  std::string reason_;
};

// Maps byte offsets of a template source to 1-based line:column (columns count characters).
class SourceMap {
 public:
  explicit SourceMap(std::string_view source);
  SourcePos at(size_t offset) const;

 private:
  std::string_view source_;
  std::vector<size_t> line_starts_;
};

}  // namespace tandem::jinja
