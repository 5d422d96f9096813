#include "grammar/json_schema.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>

#include "core/error.h"
#include "grammar/grammar.h"

namespace tandem::grammar {
namespace {

using Json = SchemaCompiler::Json;

constexpr int64_t kMaxDigitsValue = 9999999999999999;  // 16 digits: unbounded integers stop here
// One character of a JSON string, as written inside the quotes.
constexpr const char* kJsonChar = R"(([^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})))";
constexpr const char* kPlainChar = R"([^"\\\x00-\x1f])";

std::string where(const std::string& path) { return path.empty() ? "the top level" : path; }

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? sep : "") + parts[i];
  return s;
}

std::string alternatives(const std::vector<std::string>& parts) {
  return parts.size() == 1 ? parts[0] : "(" + join(parts, " | ") + ")";
}

// Code points of UTF-8 text (invalid bytes are taken one by one as Latin-1).
std::vector<uint32_t> code_points(std::string_view s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (n == 1 || i + n > s.size()) {
      out.push_back(c);
      ++i;
      continue;
    }
    uint32_t cp = c & (0x7F >> n);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return out;
}

std::string cp_escape(uint32_t cp) { return cp <= 0xFFFF ? fmt::format("\\u{:04X}", cp) : fmt::format("\\U{:08X}", cp); }

// Digit strings of one length from a to b (a <= b, same length) as a GBNF expression.
std::string digits_between(const std::string& a, const std::string& b) {
  const size_t n = a.size();
  if (n == 0) return "";
  if (a == b) return gbnf_literal(a);
  const auto rest = [&](size_t k) { return k > 0 ? fmt::format(" [0-9]{{{}}}", k) : std::string(); };
  if (a[0] == b[0]) return gbnf_literal(a.substr(0, 1)) + " " + digits_between(a.substr(1), b.substr(1));
  const bool a_zeros = a.find_first_not_of('0', 1) == std::string::npos;
  const bool b_nines = b.find_first_not_of('9', 1) == std::string::npos;
  std::vector<std::string> parts;
  char lo = a[0], hi = b[0];
  if (!a_zeros) {
    parts.push_back(gbnf_literal(a.substr(0, 1)) + " " + digits_between(a.substr(1), std::string(n - 1, '9')));
    ++lo;
  }
  std::string tail;
  if (!b_nines) {
    tail = gbnf_literal(b.substr(0, 1)) + " " + digits_between(std::string(n - 1, '0'), b.substr(1));
    --hi;
  }
  if (lo <= hi) parts.push_back(fmt::format("[{}-{}]", lo, hi) + rest(n - 1));
  if (!tail.empty()) parts.push_back(tail);
  return alternatives(parts);
}

// Decimal text of the integers lo..hi (0 <= lo <= hi), no leading zeros.
std::string unsigned_range(int64_t lo, int64_t hi) {
  const std::string a = std::to_string(lo), b = std::to_string(hi);
  std::vector<std::string> parts;
  for (size_t d = a.size(); d <= b.size(); ++d) {
    const std::string from = d == a.size() ? a : "1" + std::string(d - 1, '0');
    const std::string to = d == b.size() ? b : std::string(d, '9');
    parts.push_back(digits_between(from, to));
  }
  return alternatives(parts);
}

// Integers lo..hi (lo <= hi) as JSON text.
std::string integer_range(int64_t lo, int64_t hi) {
  std::vector<std::string> parts;
  if (lo < 0) {
    const int64_t neg_lo = hi < 0 ? -hi : 1, neg_hi = -lo;
    if (neg_lo <= neg_hi) parts.push_back("\"-\" " + unsigned_range(neg_lo, neg_hi));
  }
  if (hi >= 0) parts.push_back(unsigned_range(std::max<int64_t>(lo, 0), hi));
  return alternatives(parts);
}

// The bounds of a numeric schema rounded inwards to integers.
std::pair<int64_t, int64_t> integer_bounds(const Json& s, const std::string& path) {
  int64_t lo = -kMaxDigitsValue, hi = kMaxDigitsValue;
  auto value = [&](const char* key) {
    if (!s[key].is_number()) fail("JSON Schema: '{}' at {} must be a number", key, where(path));
    const double v = s[key].get<double>();
    if (!std::isfinite(v) || std::fabs(v) > 1e16) fail("JSON Schema: '{}' at {} is out of the supported range", key, where(path));
    return v;
  };
  if (s.contains("minimum")) lo = std::max(lo, static_cast<int64_t>(std::ceil(value("minimum"))));
  if (s.contains("exclusiveMinimum")) lo = std::max(lo, static_cast<int64_t>(std::floor(value("exclusiveMinimum"))) + 1);
  if (s.contains("maximum")) hi = std::min(hi, static_cast<int64_t>(std::floor(value("maximum"))));
  if (s.contains("exclusiveMaximum")) hi = std::min(hi, static_cast<int64_t>(std::ceil(value("exclusiveMaximum"))) - 1);
  return {lo, hi};
}

bool known_keyword(const std::string& k) {
  static const std::set<std::string> keys = {
      "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const",
      "minLength", "maxLength", "format", "pattern", "$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf",
      "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "title", "description", "default", "examples",
      "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "uniqueItems"};
  return keys.count(k) > 0;
}

// JSON pointer unescaping of one reference token.
std::string pointer_token(std::string t) {
  std::string out;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '~' && i + 1 < t.size()) {
      out += t[i + 1] == '1' ? '/' : '~';
      ++i;
    } else {
      out += t[i];
    }
  }
  return out;
}

class RegexTranslator {
 public:
  explicit RegexTranslator(std::string_view re) : re_(re) {}

  // Each top-level alternative may be anchored at either end; an unanchored end may have
  // any text beside the match (a JSON Schema pattern searches).
  std::string run() {
    const std::string any = std::string(kJsonChar) + "*";
    std::vector<std::string> parts;
    do {
      const bool start_anchor = eat('^');
      end_anchor_ = false;
      const std::string body = concatenation();
      parts.push_back((start_anchor ? "" : any + " ") + body + (end_anchor_ ? "" : " " + any));
    } while (eat('|'));
    if (i_ < re_.size()) fail_here(fmt::format("unexpected '{}'", re_[i_]));
    return alternatives(parts);
  }

 private:
  [[noreturn]] void unsupported(const std::string& what) const {
    fail("JSON Schema: pattern '{}': {} are not supported", re_, what);
  }
  [[noreturn]] void fail_here(const std::string& what) const {
    fail("JSON Schema: pattern '{}': {} at offset {}", re_, what, i_);
  }
  bool eat(char c) {
    if (i_ < re_.size() && re_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  char peek() const { return i_ < re_.size() ? re_[i_] : '\0'; }

  std::string alternation() {
    std::vector<std::string> parts{concatenation()};
    while (eat('|')) parts.push_back(concatenation());
    return alternatives(parts);
  }

  std::string concatenation() {
    std::vector<std::string> items;
    while (i_ < re_.size() && peek() != '|' && peek() != ')') {
      if (peek() == '$') {
        ++i_;
        if (depth_ > 0 || (i_ != re_.size() && peek() != '|')) unsupported("'$' anchors inside the pattern");
        end_anchor_ = true;
        break;
      }
      if (peek() == '^') unsupported("'^' anchors inside the pattern");
      std::string atom = this->atom();
      items.push_back(quantified(std::move(atom)));
    }
    return items.empty() ? "\"\"" : join(items, " ");
  }

  std::string quantified(std::string atom) {
    std::string q;
    if (eat('*')) q = "*";
    else if (eat('+')) q = "+";
    else if (eat('?')) q = "?";
    else if (peek() == '{') {
      const size_t at = i_;
      ++i_;
      std::string m, n;
      while (std::isdigit(static_cast<unsigned char>(peek()))) m += re_[i_++];
      bool comma = eat(',');
      while (comma && std::isdigit(static_cast<unsigned char>(peek()))) n += re_[i_++];
      if (m.empty() || !eat('}')) {
        i_ = at;
        fail_here("a '{' that is not a {m,n} repetition");
      }
      q = "{" + m + (comma ? "," + n : "") + "}";
    }
    if (q.empty()) return atom;
    if (eat('+')) unsupported("possessive quantifiers");
    eat('?');  // lazy: the same strings match
    return "(" + atom + ")" + q;
  }

  // A character as it is written inside a JSON string.
  static std::string json_char(uint32_t cp) {
    if (cp == '"') return R"("\\\"")";
    if (cp == '\\') return R"("\\\\")";
    if (cp == '\n') return R"("\\n")";
    if (cp == '\t') return R"("\\t")";
    if (cp == '\r') return R"("\\r")";
    if (cp < 0x20) return fmt::format(R"("\\u{:04x}")", cp);
    return gbnf_literal(utf8_encode(cp));
  }

  using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

  // A set of characters: the plain ones as a class, those JSON must escape as escapes.
  static std::string char_set(Ranges ranges, bool negated) {
    std::string cls = negated ? "[^\"\\\\\\x00-\\x1f" : "[";
    std::vector<std::string> escaped;
    bool any_plain = negated;
    for (auto [lo, hi] : ranges) {
      if (!negated) {
        for (uint32_t c : {uint32_t{'"'}, uint32_t{'\\'}}) {
          if (lo <= c && c <= hi) escaped.push_back(json_char(c));
        }
        for (uint32_t c = lo; c <= std::min<uint32_t>(hi, 0x1F); ++c) escaped.push_back(json_char(c));
        lo = std::max<uint32_t>(lo, 0x20);
        if (lo > hi) continue;
      }
      // The class below may still hold '"' or '\\' for a positive set: split them out.
      std::vector<std::pair<uint32_t, uint32_t>> pieces{{lo, hi}};
      if (!negated) {
        for (uint32_t c : {uint32_t{'"'}, uint32_t{'\\'}}) {
          std::vector<std::pair<uint32_t, uint32_t>> next;
          for (auto [a, b] : pieces) {
            if (c < a || c > b) {
              next.emplace_back(a, b);
              continue;
            }
            if (a < c) next.emplace_back(a, c - 1);
            if (c < b) next.emplace_back(c + 1, b);
          }
          pieces = std::move(next);
        }
      }
      for (auto [a, b] : pieces) {
        cls += cp_escape(a);
        if (b != a) cls += "-" + cp_escape(b);
        any_plain = true;
      }
    }
    cls += "]";
    std::vector<std::string> parts;
    if (any_plain) parts.push_back(cls);
    parts.insert(parts.end(), escaped.begin(), escaped.end());
    if (parts.empty()) return "[^\\x00-\\U0010FFFF]";  // matches nothing
    return alternatives(parts);
  }

  static Ranges shorthand(char c) {
    switch (c) {
      case 'd': return {{'0', '9'}};
      case 'w': return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
      case 's': return {{'\t', '\r'}, {' ', ' '}};
    }
    return {};
  }

  // One escaped character (after the backslash), as a code point.
  uint32_t escaped_char() {
    const char c = peek();
    ++i_;
    switch (c) {
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case 'f': return '\f';
      case 'v': return '\v';
      case '0': return 0;
      case 'u': {
        uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
          const char h = peek();
          if (!std::isxdigit(static_cast<unsigned char>(h))) fail_here("\\u needs 4 hex digits");
          v = v * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
          ++i_;
        }
        return v;
      }
      case 'b': case 'B': unsupported("word boundaries (\\b, \\B)");
      case '\0': fail_here("a pattern ending in '\\'");
      default:
        if (c >= '1' && c <= '9') unsupported("backreferences");
        if (std::isalnum(static_cast<unsigned char>(c))) unsupported(fmt::format("the escape '\\{}'", c));
        return static_cast<unsigned char>(c);
    }
  }

  uint32_t literal_char() {
    const std::vector<uint32_t> cps = code_points(re_.substr(i_, 4));
    const uint32_t cp = cps.empty() ? 0 : cps[0];
    i_ += utf8_encode(cp).size();
    return cp;
  }

  std::string atom() {
    const char c = peek();
    if (c == '(') {
      ++i_;
      if (eat('?')) {
        if (eat(':')) {
        } else if (peek() == '<' && i_ + 1 < re_.size() && re_[i_ + 1] != '=' && re_[i_ + 1] != '!') {
          while (i_ < re_.size() && re_[i_] != '>') ++i_;  // a named group: the name does not matter
          if (!eat('>')) fail_here("an unterminated group name");
        } else if (peek() == '=' || peek() == '!' || peek() == '<') {
          unsupported("lookaround assertions");
        } else {
          unsupported("inline flags and other (? groups");
        }
      }
      ++depth_;
      std::string inner = alternation();
      --depth_;
      if (!eat(')')) fail_here("a missing ')'");
      return "(" + inner + ")";
    }
    if (c == '[') return char_class();
    if (c == '.') {
      ++i_;
      return char_set({{'\n', '\n'}}, true);
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') fail_here(fmt::format("'{}' with nothing to repeat", c));
    if (c == '\\') {
      ++i_;
      const char e = peek();
      if (e == 'd' || e == 'w' || e == 's') {
        ++i_;
        return char_set(shorthand(e), false);
      }
      if (e == 'D' || e == 'W' || e == 'S') {
        ++i_;
        return char_set(shorthand(static_cast<char>(std::tolower(e))), true);
      }
      return json_char(escaped_char());
    }
    return json_char(literal_char());
  }

  std::string char_class() {
    ++i_;  // '['
    const bool negated = eat('^');
    Ranges ranges;
    bool first = true;
    while (i_ < re_.size() && (peek() != ']' || first)) {
      first = false;
      uint32_t lo;
      if (peek() == '\\') {
        ++i_;
        const char e = peek();
        if (e == 'd' || e == 'w' || e == 's') {
          ++i_;
          for (auto r : shorthand(e)) ranges.push_back(r);
          continue;
        }
        if (e == 'D' || e == 'W' || e == 'S') unsupported("negated shorthands inside a class");
        lo = escaped_char();
      } else {
        lo = literal_char();
      }
      uint32_t hi = lo;
      if (peek() == '-' && i_ + 1 < re_.size() && re_[i_ + 1] != ']') {
        ++i_;
        if (peek() == '\\') {
          ++i_;
          hi = escaped_char();
        } else {
          hi = literal_char();
        }
        if (hi < lo) fail_here("a reversed range");
      }
      ranges.emplace_back(lo, hi);
    }
    if (!eat(']')) fail_here("an unterminated '['");
    return char_set(std::move(ranges), negated);
  }

  std::string_view re_;
  size_t i_ = 0;
  bool end_anchor_ = false;
  int depth_ = 0;  // groups open
};

}  // namespace

std::string gbnf_literal(std::string_view bytes) {
  std::string s = "\"";
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"') s += "\\\"";
    else if (c == '\\') s += "\\\\";
    else if (c == '\n') s += "\\n";
    else if (c == '\t') s += "\\t";
    else if (c == '\r') s += "\\r";
    else if (c < 0x20 || c == 0x7F) s += fmt::format("\\x{:02X}", c);
    else s += ch;  // UTF-8 passes through: the GBNF parser reads it as characters
  }
  return s + "\"";
}

std::string regex_to_gbnf(std::string_view pattern) { return RegexTranslator(pattern).run(); }

std::string SchemaCompiler::rule(const std::string& name_hint, const std::string& body) {
  std::string base;
  for (char c : name_hint) base += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '-';
  if (base.empty()) base = "r";
  std::string name = base;
  for (int n = 2; names_.count(name) || name == "root"; ++n) name = fmt::format("{}-{}", base, n);
  names_.insert(name);
  rules_.emplace_back(name, body);
  return name;
}

std::string SchemaCompiler::ws() { return primitive("ws"); }

std::string SchemaCompiler::primitive(const std::string& which) {
  auto it = primitives_.find(which);
  if (it != primitives_.end()) return it->second;
  std::string body;
  if (which == "ws") {
    body = R"(| " " | "\n" [ \t]{0,40})";
  } else if (which == "string") {
    body = std::string("\"\\\"\" ") + kJsonChar + "* \"\\\"\"";
  } else if (which == "int") {
    body = R"("0" | [1-9] [0-9]{0,15})";
  } else if (which == "integer") {
    body = "\"-\"? " + primitive("int");
  } else if (which == "number") {
    body = "\"-\"? " + primitive("int") + R"( ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?)";
  } else if (which == "boolean") {
    body = R"("true" | "false")";
  } else if (which == "null") {
    body = R"("null")";
  } else if (which == "value") {
    const std::string name = rule("value", "");  // recursive: name first
    primitives_[which] = name;
    const std::string w = ws(), str = primitive("string");
    const std::string object = fmt::format(R"("{{" {0} ({1} {0} ":" {0} {2} {0} ("," {0} {1} {0} ":" {0} {2} {0})*)? "}}")", w, str, name);
    const std::string array = fmt::format(R"("[" {0} ({1} {0} ("," {0} {1} {0})*)? "]")", w, name);
    primitives_["object"] = rule("object", object);
    const std::string body_text = fmt::format("{} | {} | {} | {} | {} | {}", primitives_["object"], rule("array", array),
                                              str, primitive("number"), primitive("boolean"), primitive("null"));
    for (auto& [n, b] : rules_) {
      if (n == name) b = body_text;
    }
    return name;
  } else if (which == "date") {
    body = R"([12] [0-9]{3} "-" (("01" | "03" | "05" | "07" | "08" | "10" | "12") "-" ("0" [1-9] | [12] [0-9] | "3" [01]) | ("04" | "06" | "09" | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | "02" "-" ("0" [1-9] | "1" [0-9] | "2" [0-8])))";
  } else if (which == "time") {
    body = R"(([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]))";
  } else if (which == "date-time") {
    body = primitive("date") + " \"T\" " + primitive("time");
  } else if (which == "uuid") {
    body = R"([0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12})";
  } else if (which == "email") {
    body = R"([a-zA-Z0-9_%+-] [a-zA-Z0-9._%+-]{0,31} "@" [a-zA-Z0-9] [a-zA-Z0-9-]{0,30} ("." [a-zA-Z]{2,12}){1,3})";
  } else if (which == "ipv4") {
    const std::string octet = rule("octet", integer_range(0, 255));
    body = fmt::format(R"({0} "." {0} "." {0} "." {0})", octet);
  } else {
    fail("internal: no primitive '{}'", which);
  }
  const std::string name = rule(which, body);
  primitives_[which] = name;
  return name;
}

std::string SchemaCompiler::any_value() { return primitive("value"); }

std::string SchemaCompiler::any_object() {
  primitive("value");
  return primitives_.at("object");
}

std::string SchemaCompiler::add(const Json& schema, const Json& document, const std::string& name_hint) {
  const Json* saved = document_;
  document_ = &document;
  const std::string expr = visit(schema, name_hint, "");
  document_ = saved;
  return rule(name_hint, expr);
}

std::string SchemaCompiler::visit(const Json& s, const std::string& name, const std::string& path) {
  // The compiler recurses per level of the schema.
  struct Depth {
    int& d;
    explicit Depth(int& depth) : d(depth) {
      if (++d > 128) fail("JSON Schema: nested deeper than 128 levels");
    }
    ~Depth() { --d; }
  } guard(depth_);
  if (s.is_boolean()) {
    if (s.get<bool>()) return any_value();
    fail("JSON Schema: the schema at {} is false: no value can match it", where(path));
  }
  if (!s.is_object()) fail("JSON Schema: the schema at {} must be an object or a boolean", where(path));
  for (auto it = s.begin(); it != s.end(); ++it) {
    if (!known_keyword(it.key())) fail("JSON Schema: unsupported keyword '{}' at {}", it.key(), where(path));
  }
  if (s.contains("$ref")) {
    if (!s["$ref"].is_string()) fail("JSON Schema: '$ref' at {} must be a string", where(path));
    const std::string ref = s["$ref"].get<std::string>();
    auto it = refs_.find(ref);
    if (it != refs_.end()) return it->second;
    if (ref.rfind("#", 0) != 0) fail("JSON Schema: '$ref' at {}: only references inside the schema (#/...) are supported, not '{}'", where(path), ref);
    const Json* target = document_;
    std::string rest = ref.substr(1);
    while (!rest.empty()) {
      if (rest[0] != '/') fail("JSON Schema: '$ref' '{}' at {} is not a JSON pointer", ref, where(path));
      rest.erase(0, 1);
      const size_t slash = rest.find('/');
      const std::string token = pointer_token(rest.substr(0, slash));
      rest = slash == std::string::npos ? "" : rest.substr(slash);
      if (target->is_object() && target->contains(token)) {
        target = &(*target)[token];
      } else if (target->is_array() && !token.empty() && std::all_of(token.begin(), token.end(), ::isdigit) &&
                 std::stoul(token) < target->size()) {
        target = &(*target)[std::stoul(token)];
      } else {
        fail("JSON Schema: '$ref' '{}' at {} points at nothing", ref, where(path));
      }
    }
    // The rule's name first, so a recursive reference finds it.
    const std::string hint = ref.substr(ref.find_last_of('/') + 1);
    std::string rule_name = rule(hint.empty() ? "ref" : hint, "");
    refs_[ref] = rule_name;
    const std::string body = visit(*target, rule_name, ref.substr(1));
    for (auto& [n, b] : rules_) {
      if (n == rule_name) b = body;
    }
    return rule_name;
  }
  if (s.contains("allOf")) {
    const Json& all = s["allOf"];
    if (!all.is_array() || all.size() != 1) fail("JSON Schema: unsupported keyword 'allOf' at {} (only with one schema)", where(path));
    return visit(all[0], name, path + "/allOf/0");
  }
  if (s.contains("const")) return gbnf_literal(s["const"].dump());
  if (s.contains("enum")) {
    const Json& e = s["enum"];
    if (!e.is_array() || e.empty()) fail("JSON Schema: 'enum' at {} must be a non-empty list", where(path));
    std::vector<std::string> parts;
    for (const Json& v : e) parts.push_back(gbnf_literal(v.dump()));
    return alternatives(parts);
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    if (!s.contains(key)) continue;
    const Json& list = s[key];
    if (!list.is_array() || list.empty()) fail("JSON Schema: '{}' at {} must be a non-empty list", key, where(path));
    std::vector<std::string> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      parts.push_back(visit(list[i], fmt::format("{}-{}", name, i), fmt::format("{}/{}/{}", path, key, i)));
    }
    return alternatives(parts);
  }
  if (s.contains("type") && s["type"].is_array()) {
    std::vector<std::string> parts;
    for (const Json& t : s["type"]) {
      Json one = s;
      one["type"] = t;
      parts.push_back(visit(one, name, path));
    }
    if (parts.empty()) fail("JSON Schema: 'type' at {} is an empty list", where(path));
    return alternatives(parts);
  }
  std::string type;
  if (s.contains("type")) {
    if (!s["type"].is_string()) fail("JSON Schema: 'type' at {} must be a string or a list of strings", where(path));
    type = s["type"].get<std::string>();
  } else if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) {
    type = "object";
  } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
    type = "array";
  } else if (s.contains("pattern") || s.contains("format") || s.contains("minLength") || s.contains("maxLength")) {
    type = "string";
  } else if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum")) {
    type = "number";
  } else {
    return any_value();
  }
  if (type == "object") return object_rule(s, name, path);
  if (type == "array") return array_rule(s, name, path);
  if (type == "string") return string_rule(s, name, path);
  if (type == "integer") return integer_rule(s, path);
  if (type == "number") return number_rule(s, path);
  if (type == "boolean" || type == "null") return primitive(type);
  fail("JSON Schema: unknown type '{}' at {}", type, where(path));
}

std::string SchemaCompiler::object_rule(const Json& s, const std::string& name, const std::string& path) {
  const std::string w = ws();
  struct Prop {
    std::string key, value;
    bool required = false;
  };
  std::vector<Prop> props;
  std::set<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) fail("JSON Schema: 'required' at {} must be a list", where(path));
    for (const Json& r : s["required"]) {
      if (!r.is_string()) fail("JSON Schema: 'required' at {} must list strings", where(path));
      required.insert(r.get<std::string>());
    }
  }
  if (s.contains("properties")) {
    const Json& p = s["properties"];
    if (!p.is_object()) fail("JSON Schema: 'properties' at {} must be an object", where(path));
    for (auto it = p.begin(); it != p.end(); ++it) {
      const std::string sub = path + "/properties/" + it.key();
      props.push_back({it.key(), visit(it.value(), name + "-" + it.key(), sub), required.count(it.key()) > 0});
    }
  }
  for (const std::string& r : required) {
    if (std::none_of(props.begin(), props.end(), [&](const Prop& p) { return p.key == r; })) {
      props.push_back({r, any_value(), true});
    }
  }
  // additionalProperties: absent means none when properties are listed (as llama.cpp), any otherwise.
  std::string extra_value;
  if (s.contains("additionalProperties")) {
    const Json& a = s["additionalProperties"];
    if (!(a.is_boolean() && !a.get<bool>())) extra_value = visit(a, name + "-additional", path + "/additionalProperties");
  } else if (!s.contains("properties")) {
    extra_value = any_value();
  }
  std::string extra_kv;
  if (!extra_value.empty()) {
    std::vector<std::string> keys;
    for (const Prop& p : props) keys.push_back(p.key);
    const std::string key = keys.empty() ? primitive("string") : key_not_in(keys, name + "-extra-key");
    extra_kv = rule(name + "-extra-kv", fmt::format(R"({1} {0} ":" {0} {2} {0})", w, key, extra_value));
  }
  // rest(i, comma): the members from property i on; `comma`: one was already written.
  std::map<std::pair<size_t, bool>, std::string> memo;
  std::function<std::string(size_t, bool)> rest = [&](size_t i, bool comma) -> std::string {
    auto it = memo.find({i, comma});
    if (it != memo.end()) return it->second;
    const std::string sep = comma ? fmt::format(R"("," {} )", w) : "";
    std::string body;
    if (i == props.size()) {
      if (extra_kv.empty()) return memo[{i, comma}] = "";
      body = comma ? fmt::format(R"(("," {} {})*)", w, extra_kv)
                   : fmt::format(R"(({0} ("," {1} {0})*)?)", extra_kv, w);
    } else {
      const Prop& p = props[i];
      const std::string kv = fmt::format(R"({1} {0} ":" {0} {2} {0})", w, gbnf_literal(Json(p.key).dump()), p.value);
      const std::string item = sep + kv + " " + rest(i + 1, true);
      body = p.required ? item : "(" + item + " | " + rest(i + 1, comma) + ")";
    }
    return memo[{i, comma}] = rule(fmt::format("{}-{}{}", name, i, comma ? "c" : ""), body);
  };
  return fmt::format(R"("{{" {} {} "}}")", w, rest(0, false));
}

// A JSON string key (quotes included) that is none of `keys`, written without escapes.
std::string SchemaCompiler::key_not_in(const std::vector<std::string>& keys, const std::string& name) {
  std::vector<std::vector<uint32_t>> cps;
  for (const std::string& k : keys) cps.push_back(code_points(k));
  const std::string tail = rule(name + "-tail", std::string(kPlainChar) + "* \"\\\"\"");
  std::function<std::string(const std::vector<uint32_t>&)> node = [&](const std::vector<uint32_t>& prefix) {
    std::set<uint32_t> next;
    bool is_key = false;
    for (const auto& k : cps) {
      if (k.size() < prefix.size() || !std::equal(prefix.begin(), prefix.end(), k.begin())) continue;
      if (k.size() == prefix.size()) is_key = true;
      else if (k[prefix.size()] >= 0x20 && k[prefix.size()] != '"' && k[prefix.size()] != '\\') next.insert(k[prefix.size()]);
    }
    std::vector<std::string> parts;
    if (!is_key) parts.push_back("\"\\\"\"");
    std::string other = "[^\"\\\\\\x00-\\x1f";
    for (uint32_t c : next) {
      std::vector<uint32_t> longer = prefix;
      longer.push_back(c);
      parts.push_back("\"" + cp_escape(c) + "\" " + node(longer));
      other += cp_escape(c);
    }
    parts.push_back(other + "] " + tail);
    return rule(name, join(parts, " | "));
  };
  return rule(name, "\"\\\"\" " + node({}));
}

std::string SchemaCompiler::array_rule(const Json& s, const std::string& name, const std::string& path) {
  const std::string w = ws();
  std::string item = any_value();
  if (s.contains("items")) {
    if (s["items"].is_array()) fail("JSON Schema: 'items' as a list (tuples) at {} is not supported", where(path));
    item = visit(s["items"], name + "-item", path + "/items");
  }
  auto count = [&](const char* key) -> int64_t {
    if (!s.contains(key)) return -1;
    if (!s[key].is_number_integer() || s[key].get<int64_t>() < 0) fail("JSON Schema: '{}' at {} must be a non-negative integer", key, where(path));
    return s[key].get<int64_t>();
  };
  const int64_t min = std::max<int64_t>(count("minItems"), 0), max = count("maxItems");
  if (max >= 0 && max < min) fail("JSON Schema: 'maxItems' is below 'minItems' at {}", where(path));
  if (s.contains("uniqueItems") && s["uniqueItems"] == true && !(max >= 0 && max <= 1)) {
    fail("JSON Schema: unsupported keyword 'uniqueItems' at {} (true)", where(path));
  }
  if (max == 0) return fmt::format(R"("[" {} "]")", w);
  const std::string one = rule(name + "-element", item + " " + w);
  const std::string more = fmt::format(R"(("," {} {}))", w, one);
  const auto reps = [](int64_t lo, int64_t hi) {
    return hi < 0 ? fmt::format("{{{},}}", lo) : fmt::format("{{{},{}}}", lo, hi);
  };
  if (min == 0) return fmt::format(R"("[" {} ({} {}{})? "]")", w, one, more, reps(0, max < 0 ? -1 : max - 1));
  return fmt::format(R"("[" {} {} {}{} "]")", w, one, more, reps(min - 1, max < 0 ? -1 : max - 1));
}

std::string SchemaCompiler::string_rule(const Json& s, const std::string& name, const std::string& path) {
  const std::string quote = "\"\\\"\"";
  const bool lengths = s.contains("minLength") || s.contains("maxLength");
  if (s.contains("format")) {
    if (!s["format"].is_string()) fail("JSON Schema: 'format' at {} must be a string", where(path));
    const std::string f = s["format"].get<std::string>();
    if (f != "date" && f != "time" && f != "date-time" && f != "uuid" && f != "email" && f != "ipv4") {
      fail("JSON Schema: unsupported format '{}' at {} (date, time, date-time, uuid, email, ipv4)", f, where(path));
    }
    if (lengths || s.contains("pattern")) fail("JSON Schema: 'format' with 'pattern' or lengths at {} is not supported", where(path));
    return quote + " " + primitive(f) + " " + quote;
  }
  if (s.contains("pattern")) {
    if (!s["pattern"].is_string()) fail("JSON Schema: 'pattern' at {} must be a string", where(path));
    if (lengths) fail("JSON Schema: 'pattern' with minLength/maxLength at {} is not supported", where(path));
    return quote + " " + rule(name + "-pattern", regex_to_gbnf(s["pattern"].get<std::string>())) + " " + quote;
  }
  if (!lengths) return primitive("string");
  auto length = [&](const char* key) -> int64_t {
    if (!s.contains(key)) return -1;
    if (!s[key].is_number_integer() || s[key].get<int64_t>() < 0) fail("JSON Schema: '{}' at {} must be a non-negative integer", key, where(path));
    if (s[key].get<int64_t>() > 10000) fail("JSON Schema: '{}' at {} is above 10000, not supported", key, where(path));
    return s[key].get<int64_t>();
  };
  const int64_t min = std::max<int64_t>(length("minLength"), 0), max = length("maxLength");
  if (max >= 0 && max < min) fail("JSON Schema: 'maxLength' is below 'minLength' at {}", where(path));
  // One character each: escapes other than \uXXXX stand for one character too. (A \u escape
  // of a surrogate pair would count as two here and one in the value: kept out.)
  const std::string ch = rule("char-one", R"([^"\\\x00-\x1f] | "\\" ["\\/bfnrt])");
  return fmt::format("{0} {1}{{{2},{3}}} {0}", quote, ch, min, max < 0 ? std::string() : std::to_string(max));
}

std::string SchemaCompiler::integer_rule(const Json& s, const std::string& path) {
  const auto [lo, hi] = integer_bounds(s, path);
  if (lo > hi) fail("JSON Schema: no integer lies within the bounds at {}", where(path));
  if (lo == -kMaxDigitsValue && hi == kMaxDigitsValue) return primitive("integer");
  return integer_range(lo, hi);
}

std::string SchemaCompiler::number_rule(const Json& s, const std::string& path) {
  const bool bounded = s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") ||
                       s.contains("exclusiveMaximum");
  if (!bounded) return primitive("number");
  const auto [lo, hi] = integer_bounds(s, path);
  if (lo > hi) fail("JSON Schema: the bounds at {} hold no integer, which this compiler needs for a number", where(path));
  const std::string frac = R"("." [0-9]{1,16})";
  std::vector<std::string> parts{integer_range(lo, hi)};
  // -m.f lies in (-(m+1), -m): needs m >= -hi and m + 1 <= -lo.
  const int64_t m_lo = std::max<int64_t>(0, -hi), m_hi = -lo - 1;
  if (m_lo <= m_hi) parts.push_back("\"-\" " + unsigned_range(m_lo, m_hi) + " " + frac);
  // k.f lies in (k, k+1): needs k >= lo and k + 1 <= hi.
  const int64_t k_lo = std::max<int64_t>(0, lo), k_hi = hi - 1;
  if (k_lo <= k_hi) parts.push_back(unsigned_range(k_lo, k_hi) + " " + frac);
  return alternatives(parts);
}

std::string SchemaCompiler::gbnf(const std::string& root_body) const {
  std::string out = "root ::= " + root_body + "\n";
  for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
  return out;
}

std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema) {
  SchemaCompiler c;
  return c.gbnf(c.add(schema, schema, "value-of-schema"));
}

}  // namespace tandem::grammar
