// jinja2's built-in filters that chat templates use, with transformers' `tojson`
// (json.dumps with ensure_ascii=False and its indent/separators/sort_keys options).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "text/jinja/interpreter.h"
#include "text/jinja/text_ops.h"

namespace tandem::jinja {
namespace {

int64_t int_arg(CallArgs& a, size_t index, const char* name, int64_t dflt) {
  const Value* v = arg(a, index, name);
  if (!v) return dflt;
  if (!v->is_integral()) throw RuntimeError(fmt::format("argument '{}' must be an integer, not {}", name, type_name(*v)));
  return v->i;
}

bool bool_arg(CallArgs& a, size_t index, const char* name, bool dflt) {
  const Value* v = arg(a, index, name);
  return v ? truthy(*v) : dflt;
}

// Like str(): Undefined prints empty; Markup stays Markup (jinja2's soft_str).
Value soft_str(const Value& v) { return v.is_string() ? v : Value::string(to_str(v)); }

size_t py_len(const Value& v) {
  switch (v.type) {
    case Type::Undefined: return 0;
    case Type::String: return utf8_length(v.str());
    case Type::List: return v.list->size();
    case Type::Dict:
      if (!v.flag) return v.dict->items.size();
      break;
    default: break;
  }
  throw RuntimeError(fmt::format("object of type '{}' has no len()", type_name(v)));
}

// Attribute lookup as the `attribute=` arguments do it: dotted paths, integer parts index.
Value attribute_of(const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = numeric ? getitem_value(v, Value::integer(std::stoll(part))) : getitem_value(v, Value::string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// Sort key for case-insensitive comparisons (sort, dictsort, unique, min, max).
Value fold(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(ascii_lower(v.str()));
  return v;
}

int cmp(const Value& a, const Value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  try {
    return compare(a, b);
  } catch (const std::invalid_argument& e) {
    throw RuntimeError(e.what());
  }
}

Value f_tojson(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 4, {"ensure_ascii", "indent", "separators", "sort_keys"}, "tojson");
  DumpOptions o;
  o.ensure_ascii = bool_arg(a, 0, "ensure_ascii", false);
  o.sort_keys = bool_arg(a, 3, "sort_keys", false);
  if (const Value* ind = arg(a, 1, "indent"); ind && !ind->is_none()) {
    o.has_indent = true;
    if (ind->is_string()) {
      o.indent = ind->str();
    } else if (ind->is_integral()) {
      o.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(ind->i, 0, 256)), ' ');
    } else {
      throw RuntimeError(fmt::format("tojson indent must be an integer or a string, not {}", type_name(*ind)));
    }
    o.item_separator = ",";
  }
  if (const Value* sep = arg(a, 2, "separators"); sep && !sep->is_none()) {
    const List parts = iterate(*sep);
    if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_string())
      throw RuntimeError("tojson separators must be a pair of strings");
    o.item_separator = parts[0].str();
    o.key_separator = parts[1].str();
  }
  try {
    return Value::string(json_dumps(v, o));
  } catch (const std::invalid_argument& e) {
    throw RuntimeError(e.what());
  }
}

Value f_length(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "length");
  return Value::integer(static_cast<int64_t>(py_len(v)));
}

Value f_string(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "string");
  return soft_str(v);
}

Value f_trim(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 1, {"chars"}, "trim");
  const Value s = soft_str(v);
  const Value* chars = arg(a, 0, "chars");
  if (chars && !chars->is_none() && !chars->is_string()) throw RuntimeError("trim chars must be a string");
  return Value::string(py_strip(s.str(), chars && chars->is_string() ? &chars->str() : nullptr, true, true), s.flag);
}

Value f_upper(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "upper");
  const Value s = soft_str(v);
  return Value::string(ascii_upper(s.str()), s.flag);
}
Value f_lower(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "lower");
  const Value s = soft_str(v);
  return Value::string(ascii_lower(s.str()), s.flag);
}
Value f_title(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "title");
  const Value s = soft_str(v);
  return Value::string(py_title(s.str()), s.flag);
}
Value f_capitalize(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "capitalize");
  const Value s = soft_str(v);
  return Value::string(py_capitalize(s.str()), s.flag);
}

Value f_safe(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "safe");
  return v.is_string() ? Value::string(v.str(), true) : Value::string(to_str(v), true);
}

Value f_escape(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "escape");
  if (v.is_markup()) return v;
  return Value::string(html_escape(to_str(v)), true);
}

Value f_replace(Interpreter& in, const Value& v, CallArgs& a) {
  check_args(a, 3, {"old", "new", "count"}, "replace");
  const Value* from = arg(a, 0, "old");
  const Value* to = arg(a, 1, "new");
  if (!from || !to) throw RuntimeError("replace() needs 'old' and 'new'");
  const Value* count = arg(a, 2, "count");
  std::string out = py_replace(to_str(v), to_str(*from), to_str(*to), count && count->is_integral() ? count->i : -1);
  in.check_size(out.size());
  return Value::string(std::move(out));
}

Value f_default(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 2, {"default_value", "boolean"}, "default");
  const Value* d = arg(a, 0, "default_value");
  const bool boolean = bool_arg(a, 1, "boolean", false);
  if (v.is_undefined() || (boolean && !truthy(v))) return d ? *d : Value::string("");
  return v;
}

Value f_first(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "first");
  const List items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "last");
  if (v.is_undefined()) fail_undefined(v);
  const List items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_list(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "list");
  return Value::make_list(iterate(v));
}

Value f_items(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "items");
  if (v.is_undefined()) return Value::make_list();
  if (!v.is_dict() || v.flag) throw RuntimeError("Can only get item pairs from a mapping.");
  List out;
  for (const auto& [k, e] : v.dict->items) out.push_back(Value::make_list({k, e}, true));
  return Value::make_list(std::move(out));
}

Value f_join(Interpreter& in, const Value& v, CallArgs& a) {
  check_args(a, 2, {"d", "attribute"}, "join");
  const Value* sep = arg(a, 0, "d");
  const Value* attr = arg(a, 1, "attribute");
  const std::string d = sep ? to_str(*sep) : "";
  std::string out;
  bool first = true;
  for (const auto& item : iterate(v)) {
    if (!first) out += d;
    out += to_str(attr && !attr->is_none() ? attribute_of(item, to_str(*attr)) : item);
    first = false;
    in.check_size(out.size());
  }
  return Value::string(std::move(out));
}

Value f_indent(Interpreter& in, const Value& v, CallArgs& a) {
  check_args(a, 3, {"width", "first", "blank"}, "indent");
  if (!v.is_string()) throw RuntimeError(fmt::format("indent expects a string, not {}", type_name(v)));
  std::string indention;
  if (const Value* w = arg(a, 0, "width"); w && w->is_string()) {
    indention = w->str();
  } else {
    indention = std::string(static_cast<size_t>(std::clamp<int64_t>(int_arg(a, 0, "width", 4), 0, 4096)), ' ');
  }
  const bool first = bool_arg(a, 1, "first", false);
  const bool blank = bool_arg(a, 2, "blank", false);
  const auto lines = split_lines(v.str() + "\n", false);
  std::string rv;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k) rv += "\n";
    if (k && (blank || !lines[k].empty())) rv += indention;
    rv += lines[k];
    in.check_size(rv.size());
  }
  if (first) rv = indention + rv;
  return Value::string(std::move(rv), v.flag);
}

Value f_int(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 2, {"default", "base"}, "int");
  const Value* dflt = arg(a, 0, "default");
  const int64_t base = int_arg(a, 1, "base", 10);
  const Value fallback = dflt ? *dflt : Value::integer(0);
  switch (v.type) {
    case Type::Bool:
    case Type::Int: return Value::integer(v.i);
    case Type::Float:
      if (!std::isfinite(v.d) || std::fabs(v.d) >= 9.2e18) return fallback;
      return Value::integer(static_cast<int64_t>(v.d));
    case Type::String: {
      std::string s = py_strip(v.str(), nullptr, true, true);
      s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
      if (!s.empty()) {
        errno = 0;
        char* end = nullptr;
        const long long x = std::strtoll(s.c_str(), &end, static_cast<int>(base == 10 ? 10 : base));
        if (errno == 0 && end && *end == '\0') return Value::integer(x);
        const double d = std::strtod(s.c_str(), &end);
        if (end && *end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value::integer(static_cast<int64_t>(d));
      }
      return fallback;
    }
    default: return fallback;
  }
}

Value f_float(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 1, {"default"}, "float");
  const Value* dflt = arg(a, 0, "default");
  const Value fallback = dflt ? *dflt : Value::number(0.0);
  if (v.is_number()) return Value::number(v.as_double());
  if (v.is_string()) {
    const std::string s = py_strip(v.str(), nullptr, true, true);
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0') return Value::number(d);
  }
  return fallback;
}

Value f_abs(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "abs");
  if (v.type == Type::Float) return Value::number(std::fabs(v.d));
  if (v.is_integral()) {
    if (v.i == INT64_MIN) throw RuntimeError("integer overflow (tandem integers are 64-bit)");
    return Value::integer(v.i < 0 ? -v.i : v.i);
  }
  throw RuntimeError(fmt::format("bad operand type for abs(): '{}'", type_name(v)));
}

Value f_round(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 2, {"precision", "method"}, "round");
  const int64_t precision = std::clamp<int64_t>(int_arg(a, 0, "precision", 0), -20, 20);
  const Value* m = arg(a, 1, "method");
  const std::string method = m ? to_str(*m) : "common";
  if (!v.is_number()) throw RuntimeError(fmt::format("round() needs a number, not {}", type_name(v)));
  if (method != "common" && method != "ceil" && method != "floor") throw RuntimeError("method must be common, ceil or floor");
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  double r;
  if (method == "ceil") {
    r = std::ceil(x);
  } else if (method == "floor") {
    r = std::floor(x);
  } else {
    r = std::nearbyint(x);  // Python's round(): halves to even
  }
  if (method == "common" && v.is_integral() && precision >= 0) return Value::integer(v.i);
  return Value::number(r / scale);
}

Value f_reverse(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "reverse");
  if (v.is_string()) {
    auto cps = utf8_decode(v.str());
    std::reverse(cps.begin(), cps.end());
    return Value::string(utf8_encode(cps, 0, cps.size()));
  }
  List items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::make_list(std::move(items));
}

Value f_sort(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 3, {"reverse", "case_sensitive", "attribute"}, "sort");
  const bool reverse = bool_arg(a, 0, "reverse", false);
  const bool cs = bool_arg(a, 1, "case_sensitive", false);
  const Value* attr = arg(a, 2, "attribute");
  List items = iterate(v);
  auto key = [&](const Value& x) { return fold(attr && !attr->is_none() ? attribute_of(x, to_str(*attr)) : x, cs); };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? cmp(key(y), key(x)) < 0 : cmp(key(x), key(y)) < 0;
  });
  return Value::make_list(std::move(items));
}

Value f_dictsort(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 3, {"case_sensitive", "by", "reverse"}, "dictsort");
  if (!v.is_dict() || v.flag) throw RuntimeError("You can only sort by either a mapping");
  const bool cs = bool_arg(a, 0, "case_sensitive", false);
  const Value* by = arg(a, 1, "by");
  const std::string what = by ? to_str(*by) : "key";
  if (what != "key" && what != "value") throw RuntimeError("You can only sort by either \"key\" or \"value\"");
  const bool reverse = bool_arg(a, 2, "reverse", false);
  List items;
  for (const auto& [k, e] : v.dict->items) items.push_back(Value::make_list({k, e}, true));
  const size_t pos = what == "key" ? 0 : 1;
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    const Value kx = fold((*x.list)[pos], cs), ky = fold((*y.list)[pos], cs);
    return reverse ? cmp(ky, kx) < 0 : cmp(kx, ky) < 0;
  });
  return Value::make_list(std::move(items));
}

Value f_unique(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 2, {"case_sensitive", "attribute"}, "unique");
  const bool cs = bool_arg(a, 0, "case_sensitive", false);
  const Value* attr = arg(a, 1, "attribute");
  List out, seen;
  for (const auto& item : iterate(v)) {
    const Value key = fold(attr && !attr->is_none() ? attribute_of(item, to_str(*attr)) : item, cs);
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::make_list(std::move(out));
}

Value min_max(const Value& v, CallArgs& a, bool want_max) {
  check_args(a, 2, {"case_sensitive", "attribute"}, want_max ? "max" : "min");
  const bool cs = bool_arg(a, 0, "case_sensitive", false);
  const Value* attr = arg(a, 1, "attribute");
  const List items = iterate(v);
  if (items.empty()) return Value::undefined(fmt::format("No aggregated item, sequence was empty."));
  auto key = [&](const Value& x) { return fold(attr && !attr->is_none() ? attribute_of(x, to_str(*attr)) : x, cs); };
  const Value* best = &items[0];
  for (const auto& x : items) {
    const int c = cmp(key(x), key(*best));
    if (want_max ? c > 0 : c < 0) best = &x;
  }
  return *best;
}
Value f_max(Interpreter&, const Value& v, CallArgs& a) { return min_max(v, a, true); }
Value f_min(Interpreter&, const Value& v, CallArgs& a) { return min_max(v, a, false); }

Value f_sum(Interpreter& in, const Value& v, CallArgs& a) {
  check_args(a, 2, {"attribute", "start"}, "sum");
  const Value* attr = arg(a, 0, "attribute");
  const Value* start = arg(a, 1, "start");
  Value total = start ? *start : Value::integer(0);
  for (const auto& item : iterate(v)) total = binary_op("+", total, attr && !attr->is_none() ? attribute_of(item, to_str(*attr)) : item, in);
  return total;
}

Value f_batch(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 2, {"linecount", "fill_with"}, "batch");
  const int64_t n = int_arg(a, 0, "linecount", 0);
  if (n <= 0) throw RuntimeError("batch size must be positive");
  const Value* fill = arg(a, 1, "fill_with");
  List out, cur;
  for (const auto& item : iterate(v)) {
    cur.push_back(item);
    if (static_cast<int64_t>(cur.size()) == n) {
      out.push_back(Value::make_list(std::move(cur)));
      cur.clear();
    }
  }
  if (!cur.empty()) {
    if (fill && !fill->is_none())
      while (static_cast<int64_t>(cur.size()) < n) cur.push_back(*fill);
    out.push_back(Value::make_list(std::move(cur)));
  }
  return Value::make_list(std::move(out));
}

Value f_wordcount(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 0, {}, "wordcount");
  int64_t n = 0;
  bool in_word = false;
  for (char c : to_str(v)) {
    const bool w = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || (static_cast<unsigned char>(c) >= 0x80);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

Value f_center(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 1, {"width"}, "center");
  const std::string s = to_str(v);
  const int64_t width = std::min<int64_t>(int_arg(a, 0, "width", 80), 1 << 20);
  const int64_t len = static_cast<int64_t>(utf8_length(s));
  if (width <= len) return Value::string(s);
  const int64_t total = width - len;
  const int64_t left = total / 2 + (total & width & 1);  // Python's str.center rounding
  return Value::string(std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(total - left), ' '));
}

Value f_format(Interpreter& in, const Value& v, CallArgs& a) {
  if (!a.keyword.empty() && !a.positional.empty()) throw RuntimeError("can't handle positional and keyword arguments at the same time");
  if (!a.keyword.empty()) throw RuntimeError("format with keyword arguments is not supported");
  std::string out = percent_format(to_str(v), Value::make_list(a.positional, true));
  in.check_size(out.size());
  return Value::string(std::move(out));
}

Value f_attr(Interpreter&, const Value& v, CallArgs& a) {
  check_args(a, 1, {}, "attr");
  const Value* name = arg(a, 0, "name");
  if (!name || !name->is_string()) throw RuntimeError("attr needs an attribute name");
  if (v.is_dict() && !v.flag) {  // attr() never looks at dict items
    Value m = dict_method(v, name->str());
    return m.is_undefined() ? Value::undefined(fmt::format("'dict object' has no attribute '{}'", name->str())) : m;
  }
  return getattr_value(v, name->str());
}

// map/select/reject/selectattr/rejectattr share argument handling.
Value f_map(Interpreter& in, const Value& v, CallArgs& a) {
  const List items = iterate(v);
  List out;
  if (const Value* attr = arg(a, 99, "attribute")) {
    const Value* dflt = arg(a, 99, "default");
    for (const auto& item : items) {
      Value x = attribute_of(item, to_str(*attr));
      out.push_back(x.is_undefined() && dflt ? *dflt : x);
    }
    return Value::make_list(std::move(out));
  }
  if (a.positional.empty()) throw RuntimeError("map requires a filter name or attribute=");
  const std::string filter = to_str(a.positional[0]);
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const auto& item : items) {
    CallArgs copy = rest;
    out.push_back(in.apply_filter(filter, item, copy));
  }
  return Value::make_list(std::move(out));
}

Value select_impl(Interpreter& in, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (a.positional.empty()) throw RuntimeError("selectattr/rejectattr need an attribute name");
    attr = to_str(a.positional[next++]);
  }
  std::string test;
  if (next < a.positional.size()) test = to_str(a.positional[next++]);
  CallArgs targs;
  targs.positional.assign(a.positional.begin() + static_cast<long>(next), a.positional.end());
  targs.keyword = a.keyword;
  List out;
  for (const auto& item : iterate(v)) {
    const Value x = by_attr ? attribute_of(item, attr) : item;
    bool ok;
    if (test.empty()) {
      ok = truthy(x);
    } else {
      CallArgs copy = targs;
      ok = in.apply_test(test, x, copy);
    }
    if (ok == keep) out.push_back(item);
  }
  return Value::make_list(std::move(out));
}
Value f_select(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, true); }
Value f_reject(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, false); }
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, true); }
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, false); }

}  // namespace

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> table = {
      {"abs", f_abs},         {"attr", f_attr},         {"batch", f_batch},       {"capitalize", f_capitalize},
      {"center", f_center},   {"count", f_length},      {"d", f_default},         {"default", f_default},
      {"dictsort", f_dictsort}, {"e", f_escape},        {"escape", f_escape},     {"first", f_first},
      {"float", f_float},     {"format", f_format},     {"indent", f_indent},     {"int", f_int},
      {"items", f_items},     {"join", f_join},         {"last", f_last},         {"length", f_length},
      {"list", f_list},       {"lower", f_lower},       {"map", f_map},           {"max", f_max},
      {"min", f_min},         {"reject", f_reject},     {"rejectattr", f_rejectattr}, {"replace", f_replace},
      {"reverse", f_reverse}, {"round", f_round},       {"safe", f_safe},         {"select", f_select},
      {"selectattr", f_selectattr}, {"sort", f_sort},   {"string", f_string},     {"sum", f_sum},
      {"title", f_title},     {"tojson", f_tojson},     {"trim", f_trim},         {"unique", f_unique},
      {"upper", f_upper},     {"wordcount", f_wordcount},
  };
  return table;
}

}  // namespace tandem::jinja
