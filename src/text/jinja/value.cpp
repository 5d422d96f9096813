#include "text/jinja/value.h"

#include "text/unicode.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace tandem::jinja {

// ---- construction ----

Value Value::undefined(std::string hint) {
  Value v;
  v.s = std::make_shared<const std::string>(std::move(hint));
  return v;
}
Value Value::none() {
  Value v;
  v.type = Type::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.type = Type::Bool;
  v.i = b;
  return v;
}
Value Value::integer(int64_t x) {
  Value v;
  v.type = Type::Int;
  v.i = x;
  return v;
}
Value Value::number(double x) {
  Value v;
  v.type = Type::Float;
  v.d = x;
  return v;
}
Value Value::string(std::string text, bool markup) {
  Value v;
  v.type = Type::String;
  v.flag = markup;
  v.s = std::make_shared<const std::string>(std::move(text));
  return v;
}
Value Value::make_list(List items, bool tuple) {
  Value v;
  v.type = Type::List;
  v.flag = tuple;
  v.list = std::make_shared<List>(std::move(items));
  return v;
}
Value Value::make_dict(Dict items, bool ns) {
  Value v;
  v.type = Type::Dict;
  v.flag = ns;
  v.dict = std::make_shared<Dict>(std::move(items));
  return v;
}
Value Value::function(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn) {
  Value v;
  v.type = Type::Callable;
  v.fn = std::make_shared<Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  using json = nlohmann::ordered_json;
  switch (j.type()) {
    case json::value_t::null: return none();
    case json::value_t::boolean: return boolean(j.get<bool>());
    case json::value_t::number_integer: return integer(j.get<int64_t>());
    case json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) throw std::invalid_argument("integer " + std::to_string(u) + " does not fit in 64 bits");
      return integer(static_cast<int64_t>(u));
    }
    case json::value_t::number_float: return number(j.get<double>());
    case json::value_t::string: return string(j.get<std::string>());
    case json::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return make_list(std::move(items));
    }
    case json::value_t::object: {
      Dict d;
      d.items.reserve(j.size());
      for (const auto& [k, e] : j.items()) d.items.emplace_back(string(k), from_json(e));
      return make_dict(std::move(d));
    }
    default: throw std::invalid_argument("unsupported JSON value (binary)");
  }
}

const Value* Dict::find(const Value& key) const {
  for (const auto& [k, v] : items)
    if (equals(k, key)) return &v;
  return nullptr;
}
Value* Dict::find(const Value& key) {
  for (auto& [k, v] : items)
    if (equals(k, key)) return &v;
  return nullptr;
}
void Dict::set(const Value& key, Value value) {
  if (Value* slot = find(key)) {
    *slot = std::move(value);
  } else {
    items.emplace_back(key, std::move(value));
  }
}

// ---- UTF-8 ----

std::vector<uint32_t> utf8_decode(std::string_view t) {
  // Invalid bytes decode as themselves (U+0000..U+00FF would be wrong); map them to
  // U+FFFD-free "byte" code points above the Unicode range so re-encoding restores them.
  std::vector<uint32_t> out;
  out.reserve(t.size());
  size_t i = 0;
  while (i < t.size()) {
    const auto c = static_cast<unsigned char>(t[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    bool ok = len > 0 && i + len <= t.size();
    for (int k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(t[i + k]);
      if ((cc & 0xc0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (!ok) {
      out.push_back(0x110000u + c);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp >= 0x110000u) {
    out.push_back(static_cast<char>(cp - 0x110000u));  // an invalid byte kept as is
  } else {
    text::append_utf8(out, cp);
  }
}

std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) utf8_append(out, cps[i]);
  return out;
}

size_t utf8_length(std::string_view t) {
  size_t n = 0;
  for (char c : t) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  // Stray continuation bytes count as characters in utf8_decode; keep both in step.
  if (n == t.size()) return n;
  return utf8_decode(t).size();
}

bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

// ---- printing ----

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "-1.2345e+17": shortest digits that round-trip
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  const size_t epos = sci.find('e');
  std::string digits = sci.substr(0, epos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(epos + 1));
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(-exp - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  }
  return out;
}

namespace {

// Code points Python's str.isprintable() rejects, for repr (controls, separators, format).
bool py_unprintable(uint32_t cp) {
  if (cp >= 0x110000u) return true;
  if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) return true;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f)) return true;
  if ((cp >= 0x205f && cp <= 0x206f) || cp == 0x3000 || cp == 0xfeff) return true;
  if ((cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0xfff9 && cp <= 0xfffb)) return true;
  return false;
}

std::string repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (uint32_t cp : utf8_decode(s)) {
    if (cp == static_cast<uint32_t>(q) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp >= 0x110000u) {
      out += fmt::format("\\udc{:02x}", cp - 0x110000u);  // Python's surrogateescape
    } else if (py_unprintable(cp)) {
      out += cp <= 0xff ? fmt::format("\\x{:02x}", cp) : fmt::format("\\u{:04x}", cp);
    } else {
      utf8_append(out, cp);
    }
  }
  out += q;
  return out;
}

}  // namespace

std::string to_str(const Value& v) {
  switch (v.type) {
    case Type::Undefined: return "";
    case Type::None: return "None";
    case Type::Bool: return v.i ? "True" : "False";
    case Type::Int: return std::to_string(v.i);
    case Type::Float: return format_float(v.d);
    case Type::String: return *v.s;
    default: return repr(v);
  }
}

std::string repr(const Value& v) {
  switch (v.type) {
    case Type::String: return repr_string(*v.s);
    case Type::List: {
      std::string out = v.flag ? "(" : "[";
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += ", ";
        out += repr((*v.list)[k]);
      }
      if (v.flag && v.list->size() == 1) out += ",";
      return out + (v.flag ? ")" : "]");
    }
    case Type::Dict: {
      if (v.flag) {
        std::string out = "<Namespace {";
        bool first = true;
        for (const auto& [k, e] : v.dict->items) {
          out += (first ? "" : ", ") + repr(k) + ": " + repr(e);
          first = false;
        }
        return out + "}>";
      }
      std::string out = "{";
      bool first = true;
      for (const auto& [k, e] : v.dict->items) {
        out += (first ? "" : ", ") + repr(k) + ": " + repr(e);
        first = false;
      }
      return out + "}";
    }
    case Type::Callable: return "<function " + v.fn->name + ">";
    default: return to_str(v);
  }
}

std::string type_name(const Value& v) {
  switch (v.type) {
    case Type::Undefined: return "Undefined";
    case Type::None: return "NoneType";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return "str";
    case Type::List: return v.flag ? "tuple" : "list";
    case Type::Dict: return v.flag ? "Namespace" : "dict";
    case Type::Callable: return "function";
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.type) {
    case Type::Undefined:
    case Type::None: return false;
    case Type::Bool:
    case Type::Int: return v.i != 0;
    case Type::Float: return v.d != 0;
    case Type::String: return !v.s->empty();
    case Type::List: return !v.list->empty();
    case Type::Dict: return v.flag || !v.dict->items.empty();  // a namespace object is truthy
    case Type::Callable: return true;
  }
  return false;
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.i == b.i;
    return a.as_double() == b.as_double();
  }
  if (a.type != b.type) return false;
  switch (a.type) {
    case Type::Undefined:
    case Type::None: return true;
    case Type::String: return *a.s == *b.s;
    case Type::List: {
      if (a.flag != b.flag || a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equals((*a.list)[k], (*b.list)[k])) return false;
      return true;
    }
    case Type::Dict: {
      if (a.flag || b.flag) return a.dict == b.dict;  // namespaces compare by identity
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [k, v] : a.dict->items) {
        const Value* other = b.dict->find(k);
        if (!other || !equals(v, *other)) return false;
      }
      return true;
    }
    case Type::Callable: return a.fn == b.fn;
    default: return false;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.i < b.i ? -1 : a.i > b.i ? 1 : 0;
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.s->compare(*b.s);  // UTF-8 byte order is code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && a.flag == b.flag) {
    const size_t n = std::min(a.list->size(), b.list->size());
    for (size_t k = 0; k < n; ++k) {
      if (equals((*a.list)[k], (*b.list)[k])) continue;
      return compare((*a.list)[k], (*b.list)[k]);
    }
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  throw std::invalid_argument(fmt::format("'<' not supported between instances of '{}' and '{}'",
                                          type_name(a), type_name(b)));
}

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// ---- json.dumps ----

namespace {

void dump_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (uint32_t cp : utf8_decode(s)) {
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (cp >= 0x110000u) {
          out += fmt::format("\\udc{:02x}", cp - 0x110000u);
        } else if (cp < 0x20 || (ensure_ascii && cp > 0x7e)) {
          if (cp >= 0x10000) {
            const uint32_t v = cp - 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
          } else {
            out += fmt::format("\\u{:04x}", cp);
          }
        } else {
          utf8_append(out, cp);
        }
    }
  }
  out += '"';
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return format_float(d);
}

// Dict keys as json.dumps coerces them (str, numbers, bools, None).
std::string json_key(const Value& k) {
  switch (k.type) {
    case Type::String: return *k.s;
    case Type::Int: return std::to_string(k.i);
    case Type::Bool: return k.i ? "true" : "false";
    case Type::None: return "null";
    case Type::Float: return json_float(k.d);
    default: throw std::invalid_argument(fmt::format("keys must be str, int, float, bool or None, not {}", type_name(k)));
  }
}

void dump(std::string& out, const Value& v, const DumpOptions& o, int level) {
  auto newline = [&](int lvl) {
    out += '\n';
    for (int k = 0; k < lvl; ++k) out += o.indent;
  };
  switch (v.type) {
    case Type::None: out += "null"; return;
    case Type::Bool: out += v.i ? "true" : "false"; return;
    case Type::Int: out += std::to_string(v.i); return;
    case Type::Float: out += json_float(v.d); return;
    case Type::String: dump_string(out, *v.s, o.ensure_ascii); return;
    case Type::List: {
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      if (level > 200) throw std::invalid_argument("maximum nesting depth exceeded in JSON serialisation");
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += o.item_separator;
        if (o.has_indent) newline(level + 1);
        dump(out, (*v.list)[k], o, level + 1);
      }
      if (o.has_indent) newline(level);
      out += ']';
      return;
    }
    case Type::Dict: {
      if (v.flag) break;  // a namespace is not JSON serializable
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      if (level > 200) throw std::invalid_argument("maximum nesting depth exceeded in JSON serialisation");
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto& [k, e] : v.dict->items) entries.emplace_back(json_key(k), &e);
      if (o.sort_keys)
        std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      for (size_t k = 0; k < entries.size(); ++k) {
        if (k) out += o.item_separator;
        if (o.has_indent) newline(level + 1);
        dump_string(out, entries[k].first, o.ensure_ascii);
        out += o.key_separator;
        dump(out, *entries[k].second, o, level + 1);
      }
      if (o.has_indent) newline(level);
      out += '}';
      return;
    }
    default: break;
  }
  throw std::invalid_argument(fmt::format("Object of type {} is not JSON serializable", type_name(v)));
}

}  // namespace

std::string json_dumps(const Value& v, const DumpOptions& options) {
  std::string out;
  dump(out, v, options, 0);
  return out;
}

}  // namespace tandem::jinja
