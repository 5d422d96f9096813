// Syntax tree of a parsed template. Nodes keep the byte offset they start at, so runtime
// errors can name line:column.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/value.h"

namespace tandem::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind {
  Literal,   // value
  Name,      // name
  List,      // items
  Tuple,     // items
  Dict,      // items: key, value, key, value, ...
  Attr,      // a.name
  Item,      // a[b]
  Slice,     // a[b:c:d]; absent parts are null
  Call,      // a(items..., keyword names..=kwargs)
  Filter,    // a | name(items..., kwargs); a is null inside {% filter %} blocks
  Test,      // a is [not] name(items...); negated
  Unary,     // name is "-", "+" or "not"; a
  Binary,    // name is the operator; a, b ("and"/"or" short-circuit)
  Compare,   // a, then (ops[k], items[k]) pairs, chained as in Python
  CondExpr,  // b if a else c (c may be null)
};

struct Expr {
  ExprKind kind;
  size_t offset = 0;
  std::string name;
  Value value;
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

enum class StmtKind {
  Text,         // text
  Output,       // {{ expr }}
  If,           // branches: (condition or null for else, body)
  For,          // target in expr [if cond]: body / else_body
  Set,          // target = expr
  SetBlock,     // {% set target [| filters] %}body{% endset %}; filter is a Filter chain or null
  Macro,        // name(params = defaults): body
  CallBlock,    // {% call(params) expr %}body{% endcall %}
  FilterBlock,  // {% filter chain %}body{% endfilter %}
  With,         // {% with targets = values %}body{% endwith %}
  Break,
  Continue,
  Generation,   // transformers' {% generation %}body{% endgeneration %}: renders body as is
};

struct Stmt {
  StmtKind kind;
  size_t offset = 0;
  std::string text;  // Text; Macro name
  ExprPtr expr;      // Output, For iterable, Set value, CallBlock call
  ExprPtr target;    // For/Set/SetBlock target
  ExprPtr cond;      // For filter
  ExprPtr filter;    // SetBlock / FilterBlock filter chain (innermost `a` is null)
  Body body, else_body;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::string> params;          // Macro / CallBlock parameters
  std::vector<ExprPtr> defaults;            // aligned with params, null where none
  std::vector<std::pair<ExprPtr, ExprPtr>> assigns;  // With
};

}  // namespace tandem::jinja
