#include "text/jinja/interpreter.h"

#include <fmt/format.h>

#include <cmath>
#include <functional>

namespace tandem::jinja {

Value* Scope::find_local(const std::string& name) {
  for (auto& [k, v] : vars)
    if (k == name) return &v;
  return nullptr;
}

void Scope::set(const std::string& name, Value value) {
  if (Value* slot = find_local(name)) {
    *slot = std::move(value);
  } else {
    vars.emplace_back(name, std::move(value));
  }
}

Interpreter::Interpreter(const std::string& source, const std::string& where, const RenderLimits& limits)
    : where_(where), map_(source), limits_(limits) {}

Interpreter::~Interpreter() {
  // Namespaces are the only mutable values, so the only way to build a reference cycle.
  for (auto& ns : namespaces_) ns->items.clear();
}

Scope* Interpreter::new_scope(Scope* parent) {
  step();
  scopes_.emplace_back();
  scopes_.back().parent = parent;
  return &scopes_.back();
}

void Interpreter::step() {
  if (++steps_ > limits_.max_steps) throw RuntimeError(fmt::format("template exceeded the limit of {} evaluation steps", limits_.max_steps));
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > limits_.max_output) throw RuntimeError(fmt::format("template output exceeds the limit of {} bytes", limits_.max_output));
}

void Interpreter::append(std::string& out, std::string_view text) const {
  check_size(out.size() + text.size());
  out += text;
}

void Interpreter::fail_at(size_t offset, const std::string& message) const { throw TemplateError(where_, map_.at(offset), message); }

std::string Interpreter::render(const Body& body, const std::vector<std::pair<std::string, Value>>& globals,
                                const std::vector<std::pair<std::string, Value>>& vars) {
  Scope* g = new_scope(nullptr);
  for (const auto& [k, v] : globals) g->set(k, v);
  Scope* root = new_scope(g);
  for (const auto& [k, v] : vars) root->set(k, v);
  std::string out;
  try {
    exec(body, root, out);
  } catch (const TemplateError&) {
    throw;
  } catch (const std::exception& e) {
    // Only limits raised outside any node land here.
    throw TemplateError(where_, map_.at(0), e.what());
  }
  return out;
}

Value Interpreter::lookup(const std::string& name, Scope* scope) {
  for (Scope* s = scope; s; s = s->parent)
    if (Value* v = s->find_local(name)) return *v;
  return Value::undefined(fmt::format("'{}' is undefined", name));
}

// ---- statements ----

Interpreter::Flow Interpreter::exec(const Body& body, Scope* scope, std::string& out) {
  for (const auto& s : body) {
    const Flow f = exec(*s, scope, out);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, Scope* scope, std::string& out) {
  step();
  switch (s.kind) {
    case StmtKind::Text: append(out, s.text); return Flow::Normal;
    case StmtKind::Output: {
      const Value v = eval(*s.expr, scope);
      append(out, to_str(v));
      return Flow::Normal;
    }
    case StmtKind::If:
      for (const auto& [cond, body] : s.branches) {
        if (!cond || truthy(eval(*cond, scope))) return exec(body, scope, out);
      }
      return Flow::Normal;
    case StmtKind::For: return exec_for(s, scope, out);
    case StmtKind::Set: exec_set(*s.target, eval(*s.expr, scope), scope, s.offset); return Flow::Normal;
    case StmtKind::SetBlock: {
      std::string captured;
      exec(s.body, scope, captured);
      Value v = Value::string(std::move(captured));
      if (s.filter) v = apply_filter_chain(*s.filter, std::move(v), scope);
      exec_set(*s.target, std::move(v), scope, s.offset);
      return Flow::Normal;
    }
    case StmtKind::Macro: scope->set(s.text, define_macro(s, scope)); return Flow::Normal;
    case StmtKind::CallBlock: {
      // The body is passed to the called macro as its `caller` keyword, as jinja2 does.
      const Value callee = eval(*s.expr->a, scope);
      CallArgs args = eval_args(*s.expr, scope);
      args.keyword.emplace_back("caller", define_macro(s, scope, &s));
      try {
        append(out, to_str(call(callee, args)));
      } catch (const TemplateError&) {
        throw;
      } catch (const std::exception& e) {
        fail_at(s.expr->offset, e.what());
      }
      return Flow::Normal;
    }
    case StmtKind::FilterBlock: {
      std::string captured;
      exec(s.body, scope, captured);
      append(out, to_str(apply_filter_chain(*s.filter, Value::string(std::move(captured)), scope)));
      return Flow::Normal;
    }
    case StmtKind::With: {
      Scope* inner = new_scope(scope);
      for (const auto& [target, value] : s.assigns) exec_set(*target, eval(*value, scope), inner, s.offset);
      return exec(s.body, inner, out);
    }
    case StmtKind::Break: return Flow::Break;
    case StmtKind::Continue: return Flow::Continue;
    case StmtKind::Generation: return exec(s.body, scope, out);
  }
  return Flow::Normal;
}

void Interpreter::exec_set(const Expr& target, Value value, Scope* scope, size_t offset) {
  if (target.kind == ExprKind::Name) {
    scope->set(target.name, std::move(value));
    return;
  }
  if (target.kind == ExprKind::Attr) {
    const Value ns = lookup(target.a->name, scope);
    if (!(ns.is_dict() && ns.flag)) fail_at(offset, "cannot assign attribute on non-namespace object");
    ns.dict->set(Value::string(target.name), std::move(value));
    return;
  }
  // Tuple unpacking.
  if (value.is_undefined()) {
    try {
      fail_undefined(value);
    } catch (const std::exception& e) {
      fail_at(offset, e.what());
    }
  }
  const List items = iterate(value);
  if (items.size() != target.items.size())
    fail_at(offset, items.size() > target.items.size()
                        ? fmt::format("too many values to unpack (expected {})", target.items.size())
                        : fmt::format("not enough values to unpack (expected {}, got {})", target.items.size(), items.size()));
  for (size_t k = 0; k < items.size(); ++k) scope->set(target.items[k]->name, items[k]);
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s, Scope* scope, std::string& out) {
  const Value seq = eval(*s.expr, scope);
  if (!(seq.is_list() || seq.is_dict() || seq.is_string() || seq.is_undefined()))
    fail_at(s.expr->offset, fmt::format("'{}' object is not iterable", type_name(seq)));
  if (seq.is_dict() && seq.flag) fail_at(s.expr->offset, "'Namespace' object is not iterable");
  List items = iterate(seq);
  if (s.cond) {
    // The filter sees the loop variable but not `loop`.
    List kept;
    for (auto& item : items) {
      Scope* probe = new_scope(scope);
      exec_set(*s.target, item, probe, s.offset);
      if (truthy(eval(*s.cond, probe))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec(s.else_body, new_scope(scope), out);
    return Flow::Normal;
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t k = 0; k < n; ++k) {
    Scope* iter = new_scope(scope);
    exec_set(*s.target, items[k], iter, s.offset);
    Dict loop;
    auto put = [&](const char* key, Value v) { loop.items.emplace_back(Value::string(key), std::move(v)); };
    put("index", Value::integer(k + 1));
    put("index0", Value::integer(k));
    put("revindex", Value::integer(n - k));
    put("revindex0", Value::integer(n - k - 1));
    put("first", Value::boolean(k == 0));
    put("last", Value::boolean(k == n - 1));
    put("length", Value::integer(n));
    put("depth", Value::integer(1));
    put("depth0", Value::integer(0));
    if (k > 0) put("previtem", items[k - 1]);
    if (k + 1 < n) put("nextitem", items[k + 1]);
    put("cycle", Value::function("loop.cycle", [k](Interpreter&, CallArgs& args) -> Value {
          if (args.positional.empty()) throw RuntimeError("no items for cycling given");
          return args.positional[static_cast<size_t>(k) % args.positional.size()];
        }));
    iter->set("loop", Value::make_dict(std::move(loop)));
    const Flow f = exec(s.body, iter, out);
    if (f == Flow::Break) break;
  }
  return Flow::Normal;
}

namespace {

// Whether a body mentions a name (macros accept extra arguments only if they use
// varargs/kwargs, as jinja2 decides at compile time).
bool mentions(const Expr* e, const std::string& name);
bool mentions(const Body& body, const std::string& name);

bool mentions(const Expr* e, const std::string& name) {
  if (!e) return false;
  if (e->kind == ExprKind::Name && e->name == name) return true;
  if (mentions(e->a.get(), name) || mentions(e->b.get(), name) || mentions(e->c.get(), name)) return true;
  for (const auto& i : e->items)
    if (mentions(i.get(), name)) return true;
  for (const auto& [k, v] : e->kwargs)
    if (mentions(v.get(), name)) return true;
  return false;
}

bool mentions(const Body& body, const std::string& name) {
  for (const auto& s : body) {
    if (s->kind == StmtKind::Macro) continue;  // a nested macro has its own
    if (mentions(s->expr.get(), name) || mentions(s->target.get(), name) || mentions(s->cond.get(), name) ||
        mentions(s->filter.get(), name) || mentions(s->body, name) || mentions(s->else_body, name))
      return true;
    for (const auto& [c, b] : s->branches)
      if (mentions(c.get(), name) || mentions(b, name)) return true;
    for (const auto& d : s->defaults)
      if (mentions(d.get(), name)) return true;
    for (const auto& [t, v] : s->assigns)
      if (mentions(v.get(), name)) return true;
  }
  return false;
}

}  // namespace

Value Interpreter::define_macro(const Stmt& s, Scope* closure, const Stmt* caller_of) {
  const bool uses_varargs = mentions(s.body, "varargs");
  const bool uses_kwargs = mentions(s.body, "kwargs");
  const std::string name = caller_of ? "caller" : s.text;
  const Stmt* def = &s;
  return Value::function(name, [def, closure, name, uses_varargs, uses_kwargs](Interpreter& in, CallArgs& args) -> Value {
    if (in.depth_ >= in.limits_.max_call_depth)
      throw RuntimeError(fmt::format("maximum macro call depth ({}) exceeded", in.limits_.max_call_depth));
    Scope* scope = in.new_scope(closure);
    const size_t np = def->params.size();
    if (args.positional.size() > np && !uses_varargs)
      throw RuntimeError(fmt::format("macro '{}' takes not more than {} argument(s)", name, np));
    std::vector<bool> given(np, false);
    for (size_t k = 0; k < std::min(np, args.positional.size()); ++k) {
      scope->set(def->params[k], args.positional[k]);
      given[k] = true;
    }
    Dict extra_kw;
    for (auto& [key, v] : args.keyword) {
      if (key == "caller") {  // from {% call %}
        scope->set("caller", v);
        continue;
      }
      size_t k = 0;
      while (k < np && def->params[k] != key) ++k;
      if (k < np) {
        if (given[k]) throw RuntimeError(fmt::format("macro '{}' got multiple values for argument '{}'", name, key));
        scope->set(key, v);
        given[k] = true;
      } else if (uses_kwargs) {
        extra_kw.set(Value::string(key), v);
      } else {
        throw RuntimeError(fmt::format("macro '{}' takes no keyword argument '{}'", name, key));
      }
    }
    for (size_t k = 0; k < np; ++k) {
      if (given[k]) continue;
      // Defaults are evaluated at call time and may use earlier parameters.
      scope->set(def->params[k], def->defaults[k] ? in.eval(*def->defaults[k], scope)
                                                  : Value::undefined(fmt::format("parameter '{}' was not provided", def->params[k])));
    }
    List rest;
    for (size_t k = np; k < args.positional.size(); ++k) rest.push_back(args.positional[k]);
    scope->set("varargs", Value::make_list(std::move(rest), true));
    scope->set("kwargs", Value::make_dict(std::move(extra_kw)));
    std::string out;
    ++in.depth_;
    try {
      in.exec(def->body, scope, out);
    } catch (...) {
      --in.depth_;
      throw;
    }
    --in.depth_;
    return Value::string(std::move(out));
  });
}

// ---- expressions ----

Value Interpreter::eval(const Expr& e, Scope* scope) {
  try {
    return eval_inner(e, scope);
  } catch (const TemplateError&) {
    throw;
  } catch (const std::exception& ex) {
    // Built-ins and operators throw without a position: the innermost node adds it.
    fail_at(e.offset, ex.what());
  }
}

Value Interpreter::apply_filter_chain(const Expr& chain, Value v, Scope* scope) {
  // The chain is stored outermost-first (each filter's input in `a`); apply innermost first.
  std::vector<const Expr*> filters;
  for (const Expr* f = &chain; f; f = f->a.get()) filters.push_back(f);
  for (auto it = filters.rbegin(); it != filters.rend(); ++it) {
    CallArgs args = eval_args(**it, scope);
    try {
      v = apply_filter((*it)->name, v, args);
    } catch (const TemplateError&) {
      throw;
    } catch (const std::exception& e) {
      fail_at((*it)->offset, e.what());
    }
  }
  return v;
}

CallArgs Interpreter::eval_args(const Expr& e, Scope* scope) {
  CallArgs args;
  for (const auto& i : e.items) args.positional.push_back(eval(*i, scope));
  for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v, scope));
  return args;
}

Value Interpreter::eval_inner(const Expr& e, Scope* scope) {
  step();
  switch (e.kind) {
    case ExprKind::Literal: return e.value;
    case ExprKind::Name: return lookup(e.name, scope);
    case ExprKind::List:
    case ExprKind::Tuple: {
      List items;
      for (const auto& i : e.items) items.push_back(eval(*i, scope));
      return Value::make_list(std::move(items), e.kind == ExprKind::Tuple);
    }
    case ExprKind::Dict: {
      Dict d;
      for (size_t k = 0; k + 1 < e.items.size(); k += 2) {
        Value key = eval(*e.items[k], scope);
        if (key.is_list() && !key.flag) throw RuntimeError("unhashable type: 'list'");
        if (key.is_dict()) throw RuntimeError("unhashable type: 'dict'");
        d.set(key, eval(*e.items[k + 1], scope));
      }
      return Value::make_dict(std::move(d));
    }
    case ExprKind::Attr: return getattr_value(eval(*e.a, scope), e.name);
    case ExprKind::Item: return getitem_value(eval(*e.a, scope), eval(*e.b, scope));
    case ExprKind::Slice: {
      const Value obj = eval(*e.a, scope);
      Value parts[3];
      for (int k = 0; k < 3; ++k)
        if (e.items[k]) parts[k] = eval(*e.items[k], scope);
      return slice_value(obj, parts[0], parts[1], parts[2]);
    }
    case ExprKind::Call: {
      const Value callee = eval(*e.a, scope);
      CallArgs args = eval_args(e, scope);
      return call(callee, args);
    }
    case ExprKind::Filter: {
      const Value input = e.a ? eval(*e.a, scope) : Value::undefined("no filter input");
      CallArgs args = eval_args(e, scope);
      return apply_filter(e.name, input, args);
    }
    case ExprKind::Test: {
      const Value v = eval(*e.a, scope);
      CallArgs args = eval_args(e, scope);
      return Value::boolean(apply_test(e.name, v, args) != e.negated);
    }
    case ExprKind::Unary: {
      const Value v = eval(*e.a, scope);
      if (e.name == "not") return Value::boolean(!truthy(v));
      if (v.is_undefined()) fail_undefined(v);
      if (!v.is_number()) throw RuntimeError(fmt::format("bad operand type for unary {}: '{}'", e.name, type_name(v)));
      if (e.name == "+") return v.type == Type::Bool ? Value::integer(v.i) : v;
      if (v.type == Type::Float) return Value::number(-v.d);
      if (v.i == INT64_MIN) throw RuntimeError("integer overflow (tandem integers are 64-bit)");
      return Value::integer(-v.i);
    }
    case ExprKind::Binary: return eval_binary(e, scope);
    case ExprKind::Compare: return eval_compare(e, scope);
    case ExprKind::CondExpr:
      if (truthy(eval(*e.a, scope))) return eval(*e.b, scope);
      if (e.c) return eval(*e.c, scope);
      return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
  }
  return Value();
}

Value Interpreter::eval_binary(const Expr& e, Scope* scope) {
  if (e.name == "and") {
    Value l = eval(*e.a, scope);
    return truthy(l) ? eval(*e.b, scope) : l;
  }
  if (e.name == "or") {
    Value l = eval(*e.a, scope);
    return truthy(l) ? l : eval(*e.b, scope);
  }
  const Value l = eval(*e.a, scope);
  const Value r = eval(*e.b, scope);
  return binary_op(e.name, l, r, *this);
}

Value Interpreter::eval_compare(const Expr& e, Scope* scope) {
  Value left = eval(*e.a, scope);
  for (size_t k = 0; k < e.ops.size(); ++k) {
    Value right = eval(*e.items[k], scope);
    const std::string& op = e.ops[k];
    bool ok;
    if (op == "==") {
      ok = equals(left, right);
    } else if (op == "!=") {
      ok = !equals(left, right);
    } else if (op == "in" || op == "not in") {
      ok = contains(right, left) == (op == "in");
    } else {
      if (left.is_undefined()) fail_undefined(left);
      if (right.is_undefined()) fail_undefined(right);
      int c;
      try {
        c = compare(left, right);
      } catch (const std::invalid_argument& ex) {
        std::string msg = ex.what();
        const size_t p = msg.find("'<'");
        if (p != std::string::npos) msg.replace(p, 3, "'" + op + "'");
        throw RuntimeError(msg);
      }
      ok = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!ok) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) fail_undefined(callee);
  if (callee.type != Type::Callable) throw RuntimeError(fmt::format("'{}' object is not callable", type_name(callee)));
  return callee.fn->call(*this, args);
}

Value Interpreter::apply_filter(const std::string& name, const Value& input, CallArgs& args) {
  const auto& f = filters();
  const auto it = f.find(name);
  if (it == f.end()) throw RuntimeError(fmt::format("no filter named '{}'", name));
  return it->second(*this, input, args);
}

bool Interpreter::apply_test(const std::string& name, const Value& value, CallArgs& args) {
  const auto& t = tests();
  const auto it = t.find(name);
  if (it == t.end()) throw RuntimeError(fmt::format("no test named '{}'", name));
  return it->second(*this, value, args);
}

}  // namespace tandem::jinja
