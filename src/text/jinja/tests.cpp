// jinja2's built-in tests (`x is defined`, `is string`, `is mapping`, ...), with Python's
// type rules: bool counts as a number but not an integer, Undefined is iterable.
#include <fmt/format.h>

#include "text/jinja/interpreter.h"

namespace tandem::jinja {
namespace {

const Value& one_arg(CallArgs& a, const char* test) {
  if (a.positional.size() != 1 || !a.keyword.empty()) throw RuntimeError(fmt::format("test '{}' takes exactly one argument", test));
  return a.positional[0];
}

#define NOARG(name, expr)                                                                  \
  bool name(Interpreter&, const Value& v, CallArgs& a) {                                  \
    if (!a.positional.empty() || !a.keyword.empty()) throw RuntimeError("test takes no arguments"); \
    return (expr);                                                                         \
  }

NOARG(t_defined, !v.is_undefined())
NOARG(t_undefined, v.is_undefined())
NOARG(t_none, v.is_none())
NOARG(t_boolean, v.type == Type::Bool)
NOARG(t_true, v.type == Type::Bool && v.i)
NOARG(t_false, v.type == Type::Bool && !v.i)
NOARG(t_integer, v.type == Type::Int)
NOARG(t_float, v.type == Type::Float)
NOARG(t_number, v.is_number())
NOARG(t_string, v.is_string())
NOARG(t_mapping, v.is_dict() && !v.flag)
NOARG(t_iterable, v.is_undefined() || v.is_string() || v.is_list() || (v.is_dict() && !v.flag))
NOARG(t_sequence, v.is_undefined() || v.is_string() || v.is_list() || (v.is_dict() && !v.flag))
NOARG(t_callable, v.type == Type::Callable || v.is_undefined())
NOARG(t_escaped, v.is_markup())
NOARG(t_lower, [&] {
  const std::string s = to_str(v);
  bool cased = false;
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') return false;
    cased = cased || (c >= 'a' && c <= 'z');
  }
  return cased;
}())
NOARG(t_upper, [&] {
  const std::string s = to_str(v);
  bool cased = false;
  for (char c : s) {
    if (c >= 'a' && c <= 'z') return false;
    cased = cased || (c >= 'A' && c <= 'Z');
  }
  return cased;
}())

int64_t int_mod(const Value& v, int64_t m, const char* test) {
  if (!v.is_integral()) throw RuntimeError(fmt::format("test '{}' needs an integer, not {}", test, type_name(v)));
  if (m == 0) throw RuntimeError("integer division or modulo by zero");
  int64_t r = v.i % m;
  if (r != 0 && ((r < 0) != (m < 0))) r += m;
  return r;
}

bool t_odd(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "odd");
  return int_mod(v, 2, "odd") == 1;
}
bool t_even(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "even");
  return int_mod(v, 2, "even") == 0;
}
bool t_divisibleby(Interpreter&, const Value& v, CallArgs& a) {
  const Value& n = one_arg(a, "divisibleby");
  if (!n.is_integral()) throw RuntimeError("divisibleby needs an integer");
  return int_mod(v, n.i, "divisibleby") == 0;
}
bool t_eq(Interpreter&, const Value& v, CallArgs& a) { return equals(v, one_arg(a, "eq")); }
bool t_ne(Interpreter&, const Value& v, CallArgs& a) { return !equals(v, one_arg(a, "ne")); }
int ordered(const Value& x, const Value& y) {
  if (x.is_undefined()) fail_undefined(x);
  if (y.is_undefined()) fail_undefined(y);
  try {
    return compare(x, y);
  } catch (const std::invalid_argument& e) {
    throw RuntimeError(e.what());
  }
}
bool t_lt(Interpreter&, const Value& v, CallArgs& a) { return ordered(v, one_arg(a, "lt")) < 0; }
bool t_le(Interpreter&, const Value& v, CallArgs& a) { return ordered(v, one_arg(a, "le")) <= 0; }
bool t_gt(Interpreter&, const Value& v, CallArgs& a) { return ordered(v, one_arg(a, "gt")) > 0; }
bool t_ge(Interpreter&, const Value& v, CallArgs& a) { return ordered(v, one_arg(a, "ge")) >= 0; }
bool t_in(Interpreter&, const Value& v, CallArgs& a) { return contains(one_arg(a, "in"), v); }
bool t_sameas(Interpreter&, const Value& v, CallArgs& a) {
  const Value& o = one_arg(a, "sameas");
  if (v.type != o.type) return false;
  switch (v.type) {
    case Type::Undefined:
    case Type::None: return true;
    case Type::Bool: return v.i == o.i;
    case Type::List: return v.list == o.list;
    case Type::Dict: return v.dict == o.dict;
    case Type::Callable: return v.fn == o.fn;
    default: return equals(v, o);
  }
}
bool t_filter(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "filter");
  return v.is_string() && filters().count(v.str());
}
bool t_test(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "test");
  return v.is_string() && tests().count(v.str());
}

}  // namespace

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> table = {
      {"defined", t_defined}, {"undefined", t_undefined}, {"none", t_none},       {"boolean", t_boolean},
      {"true", t_true},       {"false", t_false},         {"integer", t_integer}, {"float", t_float},
      {"number", t_number},   {"string", t_string},       {"mapping", t_mapping}, {"iterable", t_iterable},
      {"sequence", t_sequence}, {"callable", t_callable}, {"escaped", t_escaped}, {"lower", t_lower},
      {"upper", t_upper},     {"odd", t_odd},             {"even", t_even},       {"divisibleby", t_divisibleby},
      {"eq", t_eq},           {"equalto", t_eq},          {"==", t_eq},           {"ne", t_ne},
      {"!=", t_ne},           {"lt", t_lt},               {"lessthan", t_lt},     {"<", t_lt},
      {"le", t_le},           {"<=", t_le},               {"gt", t_gt},           {"greaterthan", t_gt},
      {">", t_gt},            {"ge", t_ge},               {">=", t_ge},           {"in", t_in},
      {"sameas", t_sameas},   {"filter", t_filter},       {"test", t_test},
  };
  return table;
}

}  // namespace tandem::jinja
