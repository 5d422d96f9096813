// Runtime values of the Jinja interpreter, modelled on the Python objects jinja2 sees when
// transformers renders a chat template (json.loads output plus jinja2's own Undefined and
// Markup), so that printing, comparing and serialising them gives Python's bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::jinja {

class Interpreter;
struct Value;

using List = std::vector<Value>;

// Insertion-ordered like a Python dict; lookups are linear (template dicts are small).
struct Dict {
  std::vector<std::pair<Value, Value>> items;
  const Value* find(const Value& key) const;
  Value* find(const Value& key);
  void set(const Value& key, Value value);
};

// Arguments of a call: positional, then keyword in source order.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Built-in functions, bound methods and macros.
struct Callable {
  std::string name;
  std::function<Value(Interpreter&, CallArgs&)> call;
};

enum class Type : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Callable };

struct Value {
  Type type = Type::Undefined;
  // String: Markup (the `safe` filter); List: a Python tuple; Dict: a namespace() object.
  bool flag = false;
  int64_t i = 0;  // Bool and Int
  double d = 0;
  std::shared_ptr<const std::string> s;  // String text; Undefined: why it is undefined
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<Callable> fn;

  Value() = default;
  static Value undefined(std::string hint);
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t v);
  static Value number(double v);
  static Value string(std::string text, bool markup = false);
  static Value make_list(List items = {}, bool tuple = false);
  static Value make_dict(Dict items = {}, bool ns = false);
  static Value function(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn);
  // JSON as Python's json.loads gives it; use ordered_json so key order survives.
  static Value from_json(const nlohmann::ordered_json& j);

  bool is_undefined() const { return type == Type::Undefined; }
  bool is_none() const { return type == Type::None; }
  bool is_string() const { return type == Type::String; }
  bool is_list() const { return type == Type::List; }
  bool is_dict() const { return type == Type::Dict; }
  bool is_number() const { return type == Type::Bool || type == Type::Int || type == Type::Float; }
  bool is_integral() const { return type == Type::Bool || type == Type::Int; }
  bool is_markup() const { return type == Type::String && flag; }
  const std::string& str() const { return *s; }
  double as_double() const { return type == Type::Float ? d : static_cast<double>(i); }
  const std::string& undefined_hint() const { return *s; }
};

// Python's bool(value).
bool truthy(const Value& v);
// Python's str(value) (Undefined prints as nothing, as jinja2's default Undefined does).
std::string to_str(const Value& v);
// Python's repr(value).
std::string repr(const Value& v);
// Python's type name, for error messages ("str", "dict", "NoneType", ...).
std::string type_name(const Value& v);
// Python's float.__repr__ (shortest round trip, scientific outside 1e-4 <= |x| < 1e16).
std::string format_float(double d);
// Python ==.
bool equals(const Value& a, const Value& b);
// Python <: -1/0/1, throws std::invalid_argument with Python's message if unorderable.
int compare(const Value& a, const Value& b);

struct DumpOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool has_indent = false;
  std::string indent;  // used when has_indent
  std::string item_separator = ", ";
  std::string key_separator = ": ";
};
// Python json.dumps; throws std::invalid_argument for values JSON cannot hold.
std::string json_dumps(const Value& v, const DumpOptions& options);

// HTML escaping as markupsafe does it (the `escape` filter and Markup concatenation).
std::string html_escape(std::string_view text);

// UTF-8 helpers: code points are what Python indexes, slices and measures.
std::vector<uint32_t> utf8_decode(std::string_view text);
void utf8_append(std::string& out, uint32_t cp);
std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end);
size_t utf8_length(std::string_view text);
// Python str.isspace() for one code point.
bool is_py_space(uint32_t cp);

}  // namespace tandem::jinja
