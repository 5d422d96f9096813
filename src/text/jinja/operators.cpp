// Python semantics of attribute/item access, slicing, iteration, `in` and the arithmetic
// operators, including jinja2's rule that failed lookups give Undefined while using an
// Undefined raises.
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <optional>

#include "text/jinja/interpreter.h"

namespace tandem::jinja {

void fail_undefined(const Value& v) { throw RuntimeError(v.undefined_hint()); }

namespace {

std::string object_name(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is_dict() && v.flag) return "Namespace object";
  return "'" + type_name(v) + " object'";
}

// Normalises a Python index into [0, n) or returns false.
bool normalize_index(int64_t& k, size_t n) {
  if (k < 0) k += static_cast<int64_t>(n);
  return k >= 0 && k < static_cast<int64_t>(n);
}

}  // namespace

Value getattr_value(const Value& obj, const std::string& name) {
  switch (obj.type) {
    case Type::Undefined: fail_undefined(obj);
    case Type::Dict: {
      if (!obj.flag) {
        Value m = dict_method(obj, name);
        if (!m.is_undefined()) return m;
      }
      if (const Value* v = obj.dict->find(Value::string(name))) return *v;
      break;
    }
    case Type::String: {
      Value m = string_method(obj, name);
      if (!m.is_undefined()) return m;
      break;
    }
    case Type::List: {
      Value m = list_method(obj, name);
      if (!m.is_undefined()) return m;
      break;
    }
    default: break;
  }
  return Value::undefined(fmt::format("{} has no attribute '{}'", object_name(obj), name));
}

Value getitem_value(const Value& obj, const Value& key) {
  switch (obj.type) {
    case Type::Undefined: fail_undefined(obj);
    case Type::Dict:
      if (!obj.flag) {
        if (const Value* v = obj.dict->find(key)) return *v;
      }
      break;
    case Type::List:
    case Type::String:
      if (key.is_integral()) {
        int64_t k = key.i;
        if (obj.is_list()) {
          if (normalize_index(k, obj.list->size())) return (*obj.list)[static_cast<size_t>(k)];
        } else {
          const auto cps = utf8_decode(obj.str());
          if (normalize_index(k, cps.size())) return Value::string(utf8_encode(cps, k, k + 1));
        }
        return Value::undefined(fmt::format("{} has no element {}", object_name(obj), key.i));
      }
      break;
    default: break;
  }
  // jinja2 falls back to an attribute of that name.
  if (key.is_string()) return getattr_value(obj, key.str());
  return Value::undefined(fmt::format("{} has no element {}", object_name(obj), repr(key)));
}

Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) fail_undefined(obj);
  auto part = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (!v.is_integral()) throw RuntimeError(fmt::format("slice {} must be an integer or None, not '{}'", what, type_name(v)));
    return v.i;
  };
  const auto a = part(start, "start"), b = part(stop, "stop"), c = part(step, "step");
  const int64_t st = c.value_or(1);
  if (st == 0) throw RuntimeError("slice step cannot be zero");
  std::vector<uint32_t> cps;
  size_t n;
  if (obj.is_list()) {
    n = obj.list->size();
  } else if (obj.is_string()) {
    cps = utf8_decode(obj.str());
    n = cps.size();
  } else {
    throw RuntimeError(fmt::format("'{}' object is not subscriptable", type_name(obj)));
  }
  const int64_t len = static_cast<int64_t>(n);
  // Python's slice.indices().
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x += len;
      if (x < 0) x = st < 0 ? -1 : 0;
    } else if (x >= len) {
      x = st < 0 ? len - 1 : len;
    }
    return x;
  };
  const int64_t lo = clamp(a, st < 0 ? len - 1 : 0);
  const int64_t hi = clamp(b, st < 0 ? -1 : len);
  std::vector<size_t> idx;
  for (int64_t k = lo; st > 0 ? k < hi : k > hi; k += st) idx.push_back(static_cast<size_t>(k));
  if (obj.is_list()) {
    List out;
    out.reserve(idx.size());
    for (size_t k : idx) out.push_back((*obj.list)[k]);
    return Value::make_list(std::move(out), obj.flag);
  }
  std::string out;
  for (size_t k : idx) utf8_append(out, cps[k]);
  return Value::string(std::move(out), obj.flag);
}

List iterate(const Value& v) {
  switch (v.type) {
    case Type::Undefined: return {};
    case Type::List: return *v.list;
    case Type::Dict: {
      if (v.flag) throw RuntimeError("'Namespace' object is not iterable");
      List keys;
      for (const auto& [k, e] : v.dict->items) keys.push_back(k);
      return keys;
    }
    case Type::String: {
      List chars;
      const auto cps = utf8_decode(v.str());
      for (size_t k = 0; k < cps.size(); ++k) chars.push_back(Value::string(utf8_encode(cps, k, k + 1)));
      return chars;
    }
    default: throw RuntimeError(fmt::format("'{}' object is not iterable", type_name(v)));
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.type) {
    case Type::Undefined: return false;  // jinja2's Undefined iterates as empty
    case Type::String:
      if (!item.is_string()) throw RuntimeError(fmt::format("'in <string>' requires string as left operand, not {}", type_name(item)));
      return container.str().find(item.str()) != std::string::npos;
    case Type::List:
      for (const auto& e : *container.list)
        if (equals(e, item)) return true;
      return false;
    case Type::Dict:
      if (container.flag) throw RuntimeError("argument of type 'Namespace' is not iterable");
      return container.dict->find(item) != nullptr;
    default: throw RuntimeError(fmt::format("argument of type '{}' is not iterable", type_name(container)));
  }
}

namespace {

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  throw RuntimeError(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a), type_name(b)));
}

// Python integers never overflow; ours are 64-bit, so say so instead of wrapping.
int64_t checked_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw RuntimeError("integer overflow (tandem integers are 64-bit)");
  return r;
}
int64_t checked_sub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) throw RuntimeError("integer overflow (tandem integers are 64-bit)");
  return r;
}
int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw RuntimeError("integer overflow (tandem integers are 64-bit)");
  return r;
}

Value repeat(const Value& seq, int64_t times, const Interpreter& in) {
  if (times < 0) times = 0;
  if (seq.is_string()) {
    in.check_size(static_cast<size_t>(times) > 0 ? seq.str().size() * static_cast<size_t>(std::min<int64_t>(times, INT32_MAX)) : 0);
    std::string out;
    for (int64_t k = 0; k < times; ++k) out += seq.str();
    return Value::string(std::move(out), seq.flag);
  }
  in.check_size(seq.list->size() * static_cast<size_t>(std::min<int64_t>(times, INT32_MAX)) * sizeof(Value));
  List out;
  for (int64_t k = 0; k < times; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return Value::make_list(std::move(out), seq.flag);
}

double py_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b, const Interpreter& in) {
  if (op == "~") {
    std::string s = to_str(a);
    s += to_str(b);
    in.check_size(s.size());
    return Value::string(std::move(s));
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  const bool nums = a.is_number() && b.is_number();
  const bool ints = a.is_integral() && b.is_integral();
  if (op == "+") {
    if (ints) {
      return Value::integer(checked_add(a.i, b.i));
    }
    if (nums) return Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      in.check_size(a.str().size() + b.str().size());
      // Markup + str escapes the plain side (markupsafe), whichever side is Markup.
      if (a.flag != b.flag) return Value::string(a.flag ? a.str() + html_escape(b.str()) : html_escape(a.str()) + b.str(), true);
      return Value::string(a.str() + b.str(), a.flag);
    }
    if (a.is_list() && b.is_list() && a.flag == b.flag) {
      List out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return Value::make_list(std::move(out), a.flag);
    }
    if (a.is_string()) throw RuntimeError(fmt::format("can only concatenate str (not \"{}\") to str", type_name(b)));
    if (a.is_list()) throw RuntimeError(fmt::format("can only concatenate {0} (not \"{1}\") to {0}", type_name(a), type_name(b)));
    unsupported("+", a, b);
  }
  if (op == "-") {
    if (ints) {
      return Value::integer(checked_sub(a.i, b.i));
    }
    if (nums) return Value::number(a.as_double() - b.as_double());
    unsupported("-", a, b);
  }
  if (op == "*") {
    if (ints) {
      return Value::integer(checked_mul(a.i, b.i));
    }
    if (nums) return Value::number(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_list()) && b.is_integral()) return repeat(a, b.i, in);
    if (a.is_integral() && (b.is_string() || b.is_list())) return repeat(b, a.i, in);
    throw RuntimeError(fmt::format("can't multiply sequence by non-int of type '{}'", type_name(a.is_number() ? a : b)));
  }
  if (op == "/") {
    if (!nums) unsupported("/", a, b);
    if (b.as_double() == 0) throw RuntimeError("division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//") {
    if (!nums) unsupported("//", a, b);
    if (ints) {
      if (b.i == 0) throw RuntimeError("integer division or modulo by zero");
      if (a.i == INT64_MIN && b.i == -1) throw RuntimeError("integer overflow (tandem integers are 64-bit)");
      int64_t q = a.i / b.i;
      if ((a.i % b.i != 0) && ((a.i < 0) != (b.i < 0))) --q;
      return Value::integer(q);
    }
    if (b.as_double() == 0) throw RuntimeError("float floor division by zero");
    return Value::number(std::floor(a.as_double() / b.as_double()));
  }
  if (op == "%") {
    if (a.is_string()) {
      std::string s = percent_format(a.str(), b);
      in.check_size(s.size());
      return Value::string(std::move(s));
    }
    if (!nums) unsupported("%", a, b);
    if (ints) {
      if (b.i == 0) throw RuntimeError("integer division or modulo by zero");
      if (b.i == -1) return Value::integer(0);
      int64_t m = a.i % b.i;
      if (m != 0 && ((m < 0) != (b.i < 0))) m += b.i;
      return Value::integer(m);
    }
    if (b.as_double() == 0) throw RuntimeError("float modulo");
    return Value::number(py_fmod(a.as_double(), b.as_double()));
  }
  if (op == "**") {
    if (!nums) unsupported("** or pow()", a, b);
    if (ints && b.i >= 0) {
      int64_t r = 1, base = a.i, e = b.i;
      while (e > 0) {
        if (e & 1) r = checked_mul(r, base);
        e >>= 1;
        if (e > 0) base = checked_mul(base, base);
      }
      return Value::integer(r);
    }
    if (a.as_double() == 0 && b.as_double() < 0) throw RuntimeError("0.0 cannot be raised to a negative power");
    return Value::number(std::pow(a.as_double(), b.as_double()));
  }
  throw RuntimeError("unknown operator " + op);
}

std::string percent_format(const std::string& format, const Value& args) {
  List values;
  if (args.is_list() && args.flag) {
    values = *args.list;
  } else {
    values.push_back(args);
  }
  size_t next = 0;
  std::string out;
  for (size_t p = 0; p < format.size(); ++p) {
    if (format[p] != '%') {
      out += format[p];
      continue;
    }
    if (++p >= format.size()) throw RuntimeError("incomplete format");
    if (format[p] == '%') {
      out += '%';
      continue;
    }
    // Flags, width and precision: passed to fmt as-is for numbers.
    std::string spec;
    while (p < format.size() && std::strchr("-+ #0123456789.", format[p])) spec += format[p++];
    if (p >= format.size()) throw RuntimeError("incomplete format");
    const char conv = format[p];
    if (next >= values.size()) throw RuntimeError("not enough arguments for format string");
    const Value& v = values[next++];
    std::string piece;
    switch (conv) {
      case 's': piece = to_str(v); break;
      case 'r': piece = repr(v); break;
      case 'd':
      case 'i':
        if (!v.is_number()) throw RuntimeError(fmt::format("%{} format: a real number is required, not {}", conv, type_name(v)));
        piece = std::to_string(v.type == Type::Float ? static_cast<int64_t>(v.d) : v.i);
        break;
      case 'f':
      case 'F': {
        if (!v.is_number()) throw RuntimeError(fmt::format("must be real number, not {}", type_name(v)));
        int prec = 6;
        const size_t dot = spec.find('.');
        if (dot != std::string::npos) prec = std::atoi(spec.c_str() + dot + 1);
        piece = fmt::format("{:.{}f}", v.as_double(), std::min(prec, 100));
        break;
      }
      default: throw RuntimeError(fmt::format("unsupported format character '{}'", conv));
    }
    // Width (right-aligned, or left with '-').
    const int width = std::atoi(spec.c_str() + (spec.rfind('-', 0) == 0 ? 1 : 0));
    const size_t len = utf8_length(piece);
    if (width > 0 && static_cast<size_t>(width) > len && conv != 'f') {
      const std::string pad(static_cast<size_t>(std::min(width, 4096)) - len, ' ');
      piece = spec[0] == '-' ? piece + pad : pad + piece;
    }
    out += piece;
  }
  if (next < values.size()) throw RuntimeError("not all arguments converted during string formatting");
  return out;
}

}  // namespace tandem::jinja
