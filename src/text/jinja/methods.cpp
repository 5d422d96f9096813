// Python str/dict methods that templates call (content.split('</think>'), x.items(), ...)
// and the global functions (range, namespace, dict, raise_exception, strftime_now).
#include <fmt/format.h>

#include <ctime>

#include "text/jinja/interpreter.h"
#include "text/jinja/text_ops.h"

namespace tandem::jinja {

const Value* arg(CallArgs& args, size_t index, const char* name) {
  if (index < args.positional.size()) return &args.positional[index];
  for (auto& [k, v] : args.keyword)
    if (k == name) return &v;
  return nullptr;
}

void check_args(const CallArgs& args, size_t max_positional, std::initializer_list<const char*> keywords, const char* what) {
  if (args.positional.size() > max_positional)
    throw RuntimeError(fmt::format("{} takes at most {} argument(s) ({} given)", what, max_positional, args.positional.size()));
  for (const auto& [k, v] : args.keyword) {
    bool known = false;
    for (const char* kw : keywords) known = known || k == kw;
    if (!known) throw RuntimeError(fmt::format("{} got an unexpected keyword argument '{}'", what, k));
  }
}

namespace {

const std::string& need_string(const Value* v, const char* what) {
  if (!v || !v->is_string()) throw RuntimeError(fmt::format("{} must be a string{}", what, v ? ", not " + type_name(*v) : ""));
  return v->str();
}

// Optional `chars` argument of strip(): None/absent means whitespace.
const std::string* strip_chars(CallArgs& args) {
  const Value* c = arg(args, 0, "chars");
  if (!c || c->is_none()) return nullptr;
  return &need_string(c, "strip arg");
}

Value bound(const Value& self, const std::string& name, Value (*fn)(const Value&, CallArgs&)) {
  return Value::function(name, [self, fn](Interpreter&, CallArgs& args) { return fn(self, args); });
}

// startswith/endswith accept a string or a tuple of strings.
bool affix_match(const Value& s, CallArgs& args, bool prefix) {
  const Value* a = arg(args, 0, "prefix");
  if (!a) throw RuntimeError(fmt::format("{}() takes at least 1 argument (0 given)", prefix ? "startswith" : "endswith"));
  auto one = [&](const std::string& x) {
    const std::string& t = s.str();
    return prefix ? t.compare(0, x.size(), x) == 0 && t.size() >= x.size()
                  : t.size() >= x.size() && t.compare(t.size() - x.size(), x.size(), x) == 0;
  };
  if (a->is_list() && a->flag) {
    for (const auto& x : *a->list)
      if (one(need_string(&x, "tuple item"))) return true;
    return false;
  }
  if (!a->is_string())
    throw RuntimeError(fmt::format("{} first arg must be str or a tuple of str, not {}", prefix ? "startswith" : "endswith", type_name(*a)));
  return one(a->str());
}

Value split_method(const Value& s, CallArgs& args, bool from_right) {
  const Value* sep = arg(args, 0, "sep");
  const Value* maxv = arg(args, 1, "maxsplit");
  int64_t maxsplit = -1;
  if (maxv) {
    if (!maxv->is_integral()) throw RuntimeError("maxsplit must be an integer");
    maxsplit = maxv->i;
  }
  std::vector<std::string> parts;
  if (!sep || sep->is_none()) {
    parts = split_whitespace(s.str(), maxsplit, from_right);
  } else {
    const std::string& d = need_string(sep, "separator");
    if (d.empty()) throw RuntimeError("empty separator");
    parts = split_on(s.str(), d, maxsplit, from_right);
  }
  List out;
  for (auto& p : parts) out.push_back(Value::string(std::move(p), s.flag));
  return Value::make_list(std::move(out));
}

// str.format with positional {} / {0} and keyword {name} fields (no format specs).
Value format_method(const Value& s, CallArgs& args) {
  const std::string& f = s.str();
  std::string out;
  size_t auto_index = 0;
  for (size_t p = 0; p < f.size(); ++p) {
    if (f[p] == '{' && p + 1 < f.size() && f[p + 1] == '{') {
      out += '{';
      ++p;
    } else if (f[p] == '}' && p + 1 < f.size() && f[p + 1] == '}') {
      out += '}';
      ++p;
    } else if (f[p] == '{') {
      const size_t close = f.find('}', p);
      if (close == std::string::npos) throw RuntimeError("Single '{' encountered in format string");
      const std::string field = f.substr(p + 1, close - p - 1);
      if (field.find_first_of(":!.[") != std::string::npos) throw RuntimeError("format specs are not supported in str.format");
      const Value* v = nullptr;
      if (field.empty()) {
        v = auto_index < args.positional.size() ? &args.positional[auto_index] : nullptr;
        ++auto_index;
      } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
        const size_t k = std::stoul(field);
        v = k < args.positional.size() ? &args.positional[k] : nullptr;
      } else {
        for (auto& [k, x] : args.keyword)
          if (k == field) v = &x;
      }
      if (!v) throw RuntimeError(fmt::format("format field '{}' has no argument", field));
      out += to_str(*v);
      p = close;
    } else if (f[p] == '}') {
      throw RuntimeError("Single '}' encountered in format string");
    } else {
      out += f[p];
    }
  }
  return Value::string(std::move(out));
}

}  // namespace

Value string_method(const Value& s, const std::string& name) {
  using Fn = Value (*)(const Value&, CallArgs&);
  static const std::map<std::string, Fn> methods = {
      {"strip", [](const Value& s, CallArgs& a) { check_args(a, 1, {}, "strip()"); return Value::string(py_strip(s.str(), strip_chars(a), true, true), s.flag); }},
      {"lstrip", [](const Value& s, CallArgs& a) { check_args(a, 1, {}, "lstrip()"); return Value::string(py_strip(s.str(), strip_chars(a), true, false), s.flag); }},
      {"rstrip", [](const Value& s, CallArgs& a) { check_args(a, 1, {}, "rstrip()"); return Value::string(py_strip(s.str(), strip_chars(a), false, true), s.flag); }},
      {"split", [](const Value& s, CallArgs& a) { check_args(a, 2, {"sep", "maxsplit"}, "split()"); return split_method(s, a, false); }},
      {"rsplit", [](const Value& s, CallArgs& a) { check_args(a, 2, {"sep", "maxsplit"}, "rsplit()"); return split_method(s, a, true); }},
      {"splitlines", [](const Value& s, CallArgs& a) {
         check_args(a, 1, {"keepends"}, "splitlines()");
         const Value* k = arg(a, 0, "keepends");
         List out;
         for (auto& line : split_lines(s.str(), k && truthy(*k))) out.push_back(Value::string(std::move(line)));
         return Value::make_list(std::move(out));
       }},
      {"startswith", [](const Value& s, CallArgs& a) { check_args(a, 1, {}, "startswith()"); return Value::boolean(affix_match(s, a, true)); }},
      {"endswith", [](const Value& s, CallArgs& a) { check_args(a, 1, {}, "endswith()"); return Value::boolean(affix_match(s, a, false)); }},
      {"replace", [](const Value& s, CallArgs& a) {
         check_args(a, 3, {}, "replace()");
         std::string from = need_string(arg(a, 0, "old"), "replace() argument 1");
         std::string to = need_string(arg(a, 1, "new"), "replace() argument 2");
         const Value* c = arg(a, 2, "count");
         if (s.flag) {  // Markup.replace escapes its arguments
           from = a.positional[0].flag ? from : html_escape(from);
           to = a.positional[1].flag ? to : html_escape(to);
         }
         return Value::string(py_replace(s.str(), from, to, c && c->is_integral() ? c->i : -1), s.flag);
       }},
      {"upper", [](const Value& s, CallArgs& a) { check_args(a, 0, {}, "upper()"); return Value::string(ascii_upper(s.str()), s.flag); }},
      {"lower", [](const Value& s, CallArgs& a) { check_args(a, 0, {}, "lower()"); return Value::string(ascii_lower(s.str()), s.flag); }},
      {"title", [](const Value& s, CallArgs& a) { check_args(a, 0, {}, "title()"); return Value::string(py_title(s.str()), s.flag); }},
      {"capitalize", [](const Value& s, CallArgs& a) { check_args(a, 0, {}, "capitalize()"); return Value::string(py_capitalize(s.str()), s.flag); }},
      {"find", [](const Value& s, CallArgs& a) {
         check_args(a, 1, {}, "find()");
         const size_t p = s.str().find(need_string(arg(a, 0, "sub"), "find() argument"));
         return Value::integer(p == std::string::npos ? -1 : static_cast<int64_t>(utf8_length(std::string_view(s.str()).substr(0, p))));
       }},
      {"rfind", [](const Value& s, CallArgs& a) {
         check_args(a, 1, {}, "rfind()");
         const size_t p = s.str().rfind(need_string(arg(a, 0, "sub"), "rfind() argument"));
         return Value::integer(p == std::string::npos ? -1 : static_cast<int64_t>(utf8_length(std::string_view(s.str()).substr(0, p))));
       }},
      {"count", [](const Value& s, CallArgs& a) {
         check_args(a, 1, {}, "count()");
         return Value::integer(count_occurrences(s.str(), need_string(arg(a, 0, "sub"), "count() argument")));
       }},
      {"join", [](const Value& s, CallArgs& a) {
         check_args(a, 1, {}, "join()");
         const Value* it = arg(a, 0, "iterable");
         if (!it) throw RuntimeError("join() takes exactly one argument (0 given)");
         std::string out;
         bool first = true;
         for (const auto& x : iterate(*it)) {
           if (!x.is_string()) throw RuntimeError(fmt::format("sequence item: expected str instance, {} found", type_name(x)));
           if (!first) out += s.str();
           out += x.str();
           first = false;
         }
         return Value::string(std::move(out));
       }},
      {"format", format_method},
      {"isdigit", [](const Value& s, CallArgs& a) {
         check_args(a, 0, {}, "isdigit()");
         bool ok = !s.str().empty();
         for (char c : s.str()) ok = ok && c >= '0' && c <= '9';
         return Value::boolean(ok);
       }},
      {"isspace", [](const Value& s, CallArgs& a) {
         check_args(a, 0, {}, "isspace()");
         const auto cps = utf8_decode(s.str());
         bool ok = !cps.empty();
         for (uint32_t c : cps) ok = ok && is_py_space(c);
         return Value::boolean(ok);
       }},
  };
  const auto it = methods.find(name);
  if (it == methods.end()) return Value();
  return bound(s, name, it->second);
}

Value dict_method(const Value& d, const std::string& name) {
  if (name == "items")
    return bound(d, name, [](const Value& d, CallArgs& a) {
      check_args(a, 0, {}, "items()");
      List out;
      for (const auto& [k, v] : d.dict->items) out.push_back(Value::make_list({k, v}, true));
      return Value::make_list(std::move(out));
    });
  if (name == "keys")
    return bound(d, name, [](const Value& d, CallArgs& a) {
      check_args(a, 0, {}, "keys()");
      List out;
      for (const auto& [k, v] : d.dict->items) out.push_back(k);
      return Value::make_list(std::move(out));
    });
  if (name == "values")
    return bound(d, name, [](const Value& d, CallArgs& a) {
      check_args(a, 0, {}, "values()");
      List out;
      for (const auto& [k, v] : d.dict->items) out.push_back(v);
      return Value::make_list(std::move(out));
    });
  if (name == "get")
    return bound(d, name, [](const Value& d, CallArgs& a) {
      check_args(a, 2, {}, "get()");
      const Value* key = arg(a, 0, "key");
      if (!key) throw RuntimeError("get expected at least 1 argument, got 0");
      if (const Value* v = d.dict->find(*key)) return *v;
      const Value* dflt = arg(a, 1, "default");
      return dflt ? *dflt : Value::none();
    });
  return Value();
}

Value list_method(const Value& l, const std::string& name) {
  if (name == "index")
    return bound(l, name, [](const Value& l, CallArgs& a) {
      check_args(a, 1, {}, "index()");
      const Value* x = arg(a, 0, "value");
      if (!x) throw RuntimeError("index expected 1 argument, got 0");
      for (size_t k = 0; k < l.list->size(); ++k)
        if (equals((*l.list)[k], *x)) return Value::integer(static_cast<int64_t>(k));
      throw RuntimeError(fmt::format("{} is not in list", repr(*x)));
    });
  if (name == "count")
    return bound(l, name, [](const Value& l, CallArgs& a) {
      check_args(a, 1, {}, "count()");
      const Value* x = arg(a, 0, "value");
      if (!x) throw RuntimeError("count expected 1 argument, got 0");
      int64_t n = 0;
      for (const auto& e : *l.list) n += equals(e, *x);
      return Value::integer(n);
    });
  return Value();
}

std::vector<std::pair<std::string, Value>> default_globals() {
  std::vector<std::pair<std::string, Value>> g;
  g.emplace_back("range", Value::function("range", [](Interpreter& in, CallArgs& a) {
    check_args(a, 3, {}, "range()");
    for (const auto& v : a.positional)
      if (!v.is_integral()) throw RuntimeError(fmt::format("'{}' object cannot be interpreted as an integer", type_name(v)));
    if (a.positional.empty()) throw RuntimeError("range expected at least 1 argument, got 0");
    int64_t start = 0, stop, step = 1;
    if (a.positional.size() == 1) {
      stop = a.positional[0].i;
    } else {
      start = a.positional[0].i;
      stop = a.positional[1].i;
      if (a.positional.size() == 3) step = a.positional[2].i;
    }
    if (step == 0) throw RuntimeError("range() arg 3 must not be zero");
    const double count = std::max(0.0, std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step)));
    if (count > static_cast<double>(in.limits().max_range))
      throw RuntimeError(fmt::format("range too big, maximum size for range is {}", in.limits().max_range));
    List out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) out.push_back(Value::integer(k));
    return Value::make_list(std::move(out));
  }));
  auto make_mapping = [](CallArgs& a, const char* what) {
    Dict d;
    if (a.positional.size() > 1) throw RuntimeError(fmt::format("{} expected at most 1 argument, got {}", what, a.positional.size()));
    if (!a.positional.empty()) {
      const Value& init = a.positional[0];
      if (init.is_dict() && !init.flag) {
        d = *init.dict;
      } else {
        for (const auto& pair : iterate(init)) {
          const List kv = iterate(pair);
          if (kv.size() != 2) throw RuntimeError(fmt::format("{} update sequence element has length {}; 2 is required", what, kv.size()));
          d.set(kv[0], kv[1]);
        }
      }
    }
    for (auto& [k, v] : a.keyword) d.set(Value::string(k), v);
    return d;
  };
  g.emplace_back("namespace", Value::function("namespace", [make_mapping](Interpreter& in, CallArgs& a) {
    Value ns = Value::make_dict(make_mapping(a, "namespace"), true);
    in.track_namespace(ns);
    return ns;
  }));
  g.emplace_back("dict", Value::function("dict", [make_mapping](Interpreter&, CallArgs& a) { return Value::make_dict(make_mapping(a, "dict")); }));
  return g;
}

}  // namespace tandem::jinja
