// Tree-walking evaluator with jinja2's runtime semantics (scoping, Undefined, loop object,
// macros, call blocks) and hard limits so a hostile template fails cleanly instead of
// hanging or exhausting memory.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "text/jinja/ast.h"
#include "text/jinja/error.h"
#include "text/jinja/value.h"

namespace tandem::jinja {

struct RenderLimits {
  size_t max_output = 64u << 20;     // bytes in any one output buffer or string value
  uint64_t max_steps = 100'000'000;  // evaluated nodes
  int max_call_depth = 500;          // nested macro / filter-callback calls
  size_t max_range = 100'000;        // range() length (jinja2's sandbox uses the same bound)
};

// A thrown error with no position yet; the evaluator adds line:column of the node.
struct RuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Variables visible at one level; a for-loop iteration, macro call or with block opens one.
struct Scope {
  Scope* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;
  Value* find_local(const std::string& name);
  void set(const std::string& name, Value value);
};

class Interpreter {
 public:
  Interpreter(const std::string& source, const std::string& where, const RenderLimits& limits);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `body` with `globals` (functions) below `vars` (the template's context).
  std::string render(const Body& body, const std::vector<std::pair<std::string, Value>>& globals,
                     const std::vector<std::pair<std::string, Value>>& vars);

  // For built-ins.
  Value call(const Value& callee, CallArgs& args);
  Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
  bool apply_test(const std::string& name, const Value& value, CallArgs& args);
  void check_size(size_t bytes) const;
  void step();
  const RenderLimits& limits() const { return limits_; }
  // Records a namespace() so reference cycles through it are broken after rendering.
  void track_namespace(const Value& ns) { namespaces_.push_back(ns.dict); }

 private:
  enum class Flow { Normal, Break, Continue };

  Scope* new_scope(Scope* parent);
  Flow exec(const Body& body, Scope* scope, std::string& out);
  Flow exec(const Stmt& stmt, Scope* scope, std::string& out);
  Flow exec_for(const Stmt& stmt, Scope* scope, std::string& out);
  void exec_set(const Expr& target, Value value, Scope* scope, size_t offset);
  Value define_macro(const Stmt& stmt, Scope* scope, const Stmt* caller_of = nullptr);
  Value eval(const Expr& e, Scope* scope);
  Value eval_inner(const Expr& e, Scope* scope);
  Value eval_binary(const Expr& e, Scope* scope);
  Value eval_compare(const Expr& e, Scope* scope);
  CallArgs eval_args(const Expr& e, Scope* scope);
  // Applies a `{% set x | f | g %}` / `{% filter f | g %}` chain to v, innermost first.
  Value apply_filter_chain(const Expr& chain, Value v, Scope* scope);
  Value lookup(const std::string& name, Scope* scope);
  void append(std::string& out, std::string_view text) const;
  [[noreturn]] void fail_at(size_t offset, const std::string& message) const;

  const std::string& where_;
  SourceMap map_;
  RenderLimits limits_;
  std::deque<Scope> scopes_;
  std::vector<std::shared_ptr<Dict>> namespaces_;
  uint64_t steps_ = 0;
  int depth_ = 0;
};

// Python-semantics helpers shared by the evaluator and the built-ins.
Value getattr_value(const Value& obj, const std::string& name);
Value getitem_value(const Value& obj, const Value& key);
Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step);
// Items of an iterable as jinja2 iterates them (dict keys, string characters, Undefined empty).
List iterate(const Value& v);
bool contains(const Value& container, const Value& item);
Value binary_op(const std::string& op, const Value& a, const Value& b, const Interpreter& in);
// Python's "%" string formatting (the subset templates use).
std::string percent_format(const std::string& format, const Value& args);
[[noreturn]] void fail_undefined(const Value& v);

// Built-in filters, tests, globals and methods (filters.cpp, tests.cpp, methods.cpp).
using FilterFn = Value (*)(Interpreter&, const Value&, CallArgs&);
using TestFn = bool (*)(Interpreter&, const Value&, CallArgs&);
const std::map<std::string, FilterFn>& filters();
const std::map<std::string, TestFn>& tests();
Value string_method(const Value& s, const std::string& name);  // Undefined if none
Value dict_method(const Value& d, const std::string& name);
Value list_method(const Value& l, const std::string& name);
std::vector<std::pair<std::string, Value>> default_globals();

// Argument helpers for built-ins: positional index or keyword name, else the default.
const Value* arg(CallArgs& args, size_t index, const char* name);
void check_args(const CallArgs& args, size_t max_positional, std::initializer_list<const char*> keywords, const char* what);

}  // namespace tandem::jinja
