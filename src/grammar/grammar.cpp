#include "grammar/grammar.h"

#include <algorithm>
#include <functional>
#include <map>
#include <unordered_map>

#include "core/error.h"

namespace tandem::grammar {
namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr int kMaxRepetition = 10000;  // {m,n} bound: beyond this the helper rules get silly
constexpr int kMaxNesting = 256;       // parentheses (the parser recurses per level)

using Sequence = std::vector<Element>;
using ByteRange = std::pair<uint8_t, uint8_t>;

// The byte-range sequences whose UTF-8 strings are exactly the code points lo..hi (no
// surrogates inside): split where the encoded length changes, then until every
// continuation byte spans its full range or a single value.
void utf8_sequences(uint32_t lo, uint32_t hi, std::vector<std::vector<ByteRange>>& out) {
  for (uint32_t bound : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= bound && hi > bound) {
      utf8_sequences(lo, bound, out);
      utf8_sequences(bound + 1, hi, out);
      return;
    }
  }
  const std::string a = utf8_encode(lo);
  for (size_t i = 1; i < a.size(); ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_sequences(lo, lo | m, out);
        utf8_sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_sequences(lo, (hi & ~m) - 1, out);
        utf8_sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  const std::string b = utf8_encode(hi);
  std::vector<ByteRange> seq;
  for (size_t i = 0; i < a.size(); ++i) seq.emplace_back(static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i]));
  out.push_back(std::move(seq));
}

bool word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

class Parser {
 public:
  explicit Parser(std::string_view src) : src_(src) {}

  Grammar run(std::string_view start_name) {
    skip_space(true);
    while (pos_ < src_.size()) {
      parse_rule();
      skip_space(true);
    }
    if (!ids_.count(std::string(start_name))) fail("grammar: there is no start rule '{}'", start_name);
    for (size_t r = 0; r < defined_.size(); ++r) {
      if (!defined_[r]) error_at(first_use_[r], fmt::format("rule '{}' is used but never defined", g_.names[r]));
    }
    g_.start = ids_[std::string(start_name)];
    check_left_recursion();
    flatten_productive();
    return std::move(g_);
  }

 private:
  [[noreturn]] void error_at(size_t pos, const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail("grammar: line {}, column {}: {}", line, col, what);
  }
  [[noreturn]] void error(const std::string& what) const { error_at(pos_, what); }

  char peek(size_t ahead = 0) const { return pos_ + ahead < src_.size() ? src_[pos_ + ahead] : '\0'; }
  bool at_end() const { return pos_ >= src_.size(); }

  // Spaces, tabs, comments; newlines only where a rule may continue (inside parentheses).
  void skip_space(bool newlines) {
    while (!at_end()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
      } else if (c == '\n' && newlines) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  uint32_t rule_id(const std::string& name, size_t use_pos) {
    auto [it, fresh] = ids_.try_emplace(name, static_cast<uint32_t>(g_.names.size()));
    if (fresh) {
      g_.names.push_back(name);
      bodies_.emplace_back();
      defined_.push_back(false);
      first_use_.push_back(use_pos);
    }
    return it->second;
  }

  uint32_t helper_rule(const std::string& parent, std::vector<Sequence> alts) {
    const std::string name = fmt::format("{}#{}", parent, ++helpers_[parent]);  // never a user's name
    const uint32_t id = rule_id(name, pos_);
    bodies_[id] = std::move(alts);
    defined_[id] = true;
    return id;
  }

  uint32_t byte_set(const ByteSet& s) {
    auto [it, fresh] = set_ids_.try_emplace(s, static_cast<uint32_t>(g_.byte_sets.size()));
    if (fresh) g_.byte_sets.push_back(s);
    return it->second;
  }
  Element bytes(uint8_t lo, uint8_t hi) {
    ByteSet s{};
    for (unsigned b = lo; b <= hi; ++b) s[b >> 6] |= uint64_t{1} << (b & 63);
    return {Element::Kind::Bytes, byte_set(s)};
  }

  std::string parse_name() {
    const size_t begin = pos_;
    while (!at_end() && word_char(peek())) ++pos_;
    if (pos_ == begin) error("expected a rule name");
    return std::string(src_.substr(begin, pos_ - begin));
  }

  void parse_rule() {
    const size_t name_pos = pos_;
    const std::string name = parse_name();
    skip_space(false);
    if (src_.substr(pos_, 3) != "::=") error(fmt::format("expected '::=' after rule name '{}'", name));
    pos_ += 3;
    skip_space(true);
    const uint32_t id = rule_id(name, name_pos);
    if (defined_[id]) error_at(name_pos, fmt::format("rule '{}' is defined twice", name));
    defined_[id] = true;  // before the body, so a helper made inside sees a defined name
    bodies_[id] = parse_alternates(name, false);
    skip_space(false);
    if (!at_end() && peek() != '\n') error(fmt::format("unexpected '{}'", peek()));
  }

  std::vector<Sequence> parse_alternates(const std::string& rule, bool nested) {
    std::vector<Sequence> alts;
    alts.push_back(parse_sequence(rule, nested));
    while (true) {
      const size_t save = pos_;
      skip_space(true);  // an alternative may start on the next line with '|'
      if (peek() != '|') {
        pos_ = save;
        return alts;
      }
      ++pos_;
      skip_space(true);
      alts.push_back(parse_sequence(rule, nested));
    }
  }

  // One code point of a literal or class: an escape or a UTF-8 character.
  uint32_t parse_char() {
    const size_t at = pos_;
    const auto c = static_cast<unsigned char>(peek());
    if (c == '\\') {
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '0': return 0;
        case '\\': case '"': case '[': case ']': case '-': case '^': case '\'': case '/': case '.': case '|':
        case '(': case ')': case '*': case '+': case '?': case '{': case '}':
          return static_cast<unsigned char>(e);
        case 'x': return parse_hex(2, at);
        case 'u': return parse_hex(4, at);
        case 'U': return parse_hex(8, at);
        default:
          error_at(at, e == '\0' ? "unfinished escape" : fmt::format("unknown escape '\\{}'", e));
      }
    }
    if (c < 0x80) {
      ++pos_;
      return c;
    }
    const int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (n == 0 || pos_ + n > src_.size()) error("invalid UTF-8 in the grammar text");
    uint32_t cp = c & (0x7F >> n);
    for (int i = 1; i < n; ++i) {
      const auto cc = static_cast<unsigned char>(src_[pos_ + i]);
      if ((cc & 0xC0) != 0x80) error("invalid UTF-8 in the grammar text");
      cp = (cp << 6) | (cc & 0x3F);
    }
    pos_ += n;
    return cp;
  }

  uint32_t parse_hex(int digits, size_t at) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char h = peek();
      int d = -1;
      if (h >= '0' && h <= '9') d = h - '0';
      if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
      if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
      if (d < 0) error_at(at, fmt::format("escape needs {} hex digits", digits));
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > kMaxCodePoint) error_at(at, fmt::format("code point U+{:X} is beyond U+10FFFF", v));
    return v;
  }

  void append_literal(Sequence& seq) {
    ++pos_;  // opening quote
    while (peek() != '"') {
      if (at_end() || peek() == '\n') error("unterminated string literal");
      for (char b : utf8_encode(parse_char())) seq.push_back(bytes(static_cast<uint8_t>(b), static_cast<uint8_t>(b)));
    }
    ++pos_;
  }

  // A class as one element: a byte set when it holds only ASCII, else a helper rule whose
  // alternatives are the UTF-8 byte-range sequences of its code points.
  Element parse_class(const std::string& rule) {
    const size_t at = pos_;
    ++pos_;  // '['
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    while (peek() != ']') {
      if (at_end() || peek() == '\n') error_at(at, "unterminated character class");
      const uint32_t lo = parse_char();
      uint32_t hi = lo;
      if (peek() == '-' && peek(1) != ']' && peek(1) != '\0') {
        ++pos_;
        hi = parse_char();
        if (hi < lo) error_at(at, fmt::format("range U+{:X}-U+{:X} is reversed", lo, hi));
      }
      ranges.emplace_back(lo, hi);
    }
    ++pos_;
    return class_element(std::move(ranges), negated, rule);
  }

  Element class_element(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negated, const std::string& rule) {
    std::sort(ranges.begin(), ranges.end());
    std::vector<std::pair<uint32_t, uint32_t>> merged;
    for (const auto& r : ranges) {
      if (!merged.empty() && r.first <= merged.back().second + 1) {
        merged.back().second = std::max(merged.back().second, r.second);
      } else {
        merged.push_back(r);
      }
    }
    if (negated) {
      std::vector<std::pair<uint32_t, uint32_t>> inv;
      uint32_t next = 0;
      for (const auto& r : merged) {
        if (r.first > next) inv.emplace_back(next, r.first - 1);
        next = r.second + 1;
      }
      if (next <= kMaxCodePoint) inv.emplace_back(next, kMaxCodePoint);
      merged = std::move(inv);
    }
    // Surrogates are not characters: never part of a class.
    std::vector<std::pair<uint32_t, uint32_t>> cps;
    for (const auto& [lo, hi] : merged) {
      if (hi < 0xD800 || lo > 0xDFFF) {
        cps.emplace_back(lo, hi);
        continue;
      }
      if (lo < 0xD800) cps.emplace_back(lo, 0xD7FF);
      if (hi > 0xDFFF) cps.emplace_back(0xE000, hi);
    }
    std::vector<std::vector<ByteRange>> seqs;
    for (const auto& [lo, hi] : cps) utf8_sequences(lo, hi, seqs);
    ByteSet single{};
    std::vector<Sequence> alts;
    for (const auto& s : seqs) {
      if (s.size() == 1) {
        for (unsigned b = s[0].first; b <= s[0].second; ++b) single[b >> 6] |= uint64_t{1} << (b & 63);
      } else {
        Sequence seq;
        for (const auto& [lo, hi] : s) seq.push_back(bytes(lo, hi));
        alts.push_back(std::move(seq));
      }
    }
    const Element ascii{Element::Kind::Bytes, byte_set(single)};
    if (alts.empty()) return ascii;  // possibly the empty set: a class nothing matches
    if (single != ByteSet{}) alts.insert(alts.begin(), Sequence{ascii});
    std::string key;
    for (const auto& a : alts) {
      for (const Element& e : a) key += fmt::format("{},", e.value);
      key += ';';
    }
    auto it = class_rules_.find(key);
    if (it != class_rules_.end()) return {Element::Kind::Ref, it->second};
    const uint32_t id = helper_rule(rule, std::move(alts));
    class_rules_[key] = id;
    return {Element::Kind::Ref, id};
  }

  int parse_int() {
    const size_t begin = pos_;
    long v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + (peek() - '0');
      if (v > kMaxRepetition) error_at(begin, fmt::format("repetition count above {}", kMaxRepetition));
      ++pos_;
    }
    if (pos_ == begin) error("expected a number");
    return static_cast<int>(v);
  }

  // Replaces seq[from..] (one symbol) by `min` to `max` (-1: unbounded) repetitions of it.
  void repeat(Sequence& seq, size_t from, int min, int max, const std::string& rule) {
    Element x;
    if (seq.size() - from == 1) {
      x = seq[from];
    } else {
      x = {Element::Kind::Ref, helper_rule(rule, {Sequence(seq.begin() + static_cast<long>(from), seq.end())})};
    }
    seq.resize(from);
    for (int i = 0; i < min; ++i) seq.push_back(x);
    if (max < 0) {
      // R ::= x R | empty
      const uint32_t r = helper_rule(rule, {});
      bodies_[r] = {Sequence{x, {Element::Kind::Ref, r}}, Sequence{}};
      seq.push_back({Element::Kind::Ref, r});
      return;
    }
    // R1 ::= x | empty; Rk ::= x R(k-1) | empty
    uint32_t inner = 0;
    for (int k = 1; k <= max - min; ++k) {
      Sequence first{x};
      if (k > 1) first.push_back({Element::Kind::Ref, inner});
      inner = helper_rule(rule, {first, Sequence{}});
    }
    if (max > min) seq.push_back({Element::Kind::Ref, inner});
  }

  Sequence parse_sequence(const std::string& rule, bool nested) {
    Sequence seq;
    size_t last = SIZE_MAX;  // where the last symbol starts in seq
    while (true) {
      skip_space(nested);
      const char c = peek();
      const size_t before = seq.size();
      if (c == '"') {
        append_literal(seq);
        last = before;
      } else if (c == '[') {
        seq.push_back(parse_class(rule));
        last = before;
      } else if (c == '.') {
        ++pos_;
        seq.push_back(class_element({{'\n', '\n'}}, true, rule));  // any character but newline, as llama.cpp
        last = before;
      } else if (word_char(c)) {
        const size_t at = pos_;
        const std::string name = parse_name();
        seq.push_back({Element::Kind::Ref, rule_id(name, at)});
        last = before;
      } else if (c == '(') {
        if (++depth_ > kMaxNesting) error(fmt::format("parentheses nested deeper than {}", kMaxNesting));
        ++pos_;
        skip_space(true);
        std::vector<Sequence> alts = parse_alternates(rule, true);
        --depth_;
        skip_space(true);
        if (peek() != ')') error("expected ')'");
        ++pos_;
        if (alts.size() == 1) {
          seq.insert(seq.end(), alts[0].begin(), alts[0].end());
          if (alts[0].size() != 1) {
            // keep the group one symbol for a following repetition
            seq.resize(before);
            seq.push_back({Element::Kind::Ref, helper_rule(rule, std::move(alts))});
          }
        } else {
          seq.push_back({Element::Kind::Ref, helper_rule(rule, std::move(alts))});
        }
        last = before;
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (last == SIZE_MAX || last >= seq.size()) error(fmt::format("'{}' has nothing to repeat", c));
        ++pos_;
        int min = 0, max = -1;
        if (c == '+') min = 1;
        if (c == '?') max = 1;
        if (c == '{') {
          skip_space(false);
          min = parse_int();
          skip_space(false);
          max = min;
          if (peek() == ',') {
            ++pos_;
            skip_space(false);
            max = peek() == '}' ? -1 : parse_int();
            skip_space(false);
          }
          if (peek() != '}') error("expected '}'");
          ++pos_;
          if (max >= 0 && max < min) error(fmt::format("repetition {{{},{}}} has max below min", min, max));
        }
        repeat(seq, last, min, max, rule);
        last = SIZE_MAX;  // "x**" is not a thing
      } else {
        return seq;
      }
    }
  }

  // A rule that can reach itself at its leftmost position without consuming a byte would
  // make the matcher expand forever.
  void check_left_recursion() {
    const size_t n = bodies_.size();
    std::vector<bool> nullable(n, false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        for (const Sequence& alt : bodies_[r]) {
          const bool all = std::all_of(alt.begin(), alt.end(), [&](const Element& e) {
            return e.kind == Element::Kind::Ref && nullable[e.value];
          });
          if (all) {
            nullable[r] = changed = true;
            break;
          }
        }
      }
    }
    std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
    std::function<void(uint32_t)> visit = [&](uint32_t r) {
      color[r] = 1;
      for (const Sequence& alt : bodies_[r]) {
        for (const Element& e : alt) {
          if (e.kind != Element::Kind::Ref) break;
          if (color[e.value] == 1) {
            fail("grammar: rule '{}' is left-recursive (it can reach itself without matching any text)",
                 g_.names[e.value]);
          }
          if (color[e.value] == 0) visit(e.value);
          if (!nullable[e.value]) break;
        }
      }
      color[r] = 2;
    };
    for (uint32_t r = 0; r < n; ++r) {
      if (color[r] == 0) visit(r);
    }
  }

  // Keeps only alternatives that can finish (every rule they use has a finite sentence),
  // and lays the rules out in Grammar::code.
  void flatten_productive() {
    const size_t n = bodies_.size();
    std::vector<bool> productive(n, false);
    auto can_finish = [&](const Sequence& alt) {
      return std::all_of(alt.begin(), alt.end(), [&](const Element& e) -> bool {
        if (e.kind == Element::Kind::Bytes) return g_.byte_sets[e.value] != ByteSet{};
        return productive[e.value];
      });
    };
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (productive[r]) continue;
        if (std::any_of(bodies_[r].begin(), bodies_[r].end(), can_finish)) productive[r] = changed = true;
      }
    }
    if (!productive[g_.start]) {
      fail("grammar: it can never complete: rule '{}' has no finite match (every alternative needs a rule that never "
           "ends, or an empty character class)",
           g_.names[g_.start]);
    }
    g_.alts.assign(n, {});
    for (size_t r = 0; r < n; ++r) {
      for (const Sequence& alt : bodies_[r]) {
        if (!can_finish(alt)) continue;
        g_.alts[r].push_back(static_cast<uint32_t>(g_.code.size()));
        g_.code.insert(g_.code.end(), alt.begin(), alt.end());
        g_.code.push_back({Element::Kind::End, 0});
      }
    }
  }

  std::string_view src_;
  size_t pos_ = 0;
  int depth_ = 0;  // open parentheses
  Grammar g_;
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<std::vector<Sequence>> bodies_;
  std::vector<bool> defined_;
  std::vector<size_t> first_use_;
  std::map<ByteSet, uint32_t> set_ids_;
  std::map<std::string, uint32_t> class_rules_;
  std::map<std::string, int> helpers_;
};

}  // namespace

std::string utf8_encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

Grammar Grammar::parse(std::string_view text, std::string_view start) { return Parser(text).run(start); }

std::shared_ptr<const Grammar> compile(std::string_view gbnf, bool leading_space) {
  if (!leading_space) return std::make_shared<const Grammar>(Grammar::parse(gbnf));
  // Appended after the text, so line numbers in errors stay the user's.
  const std::string text = std::string(gbnf) + "\ntandem-answer ::= [ \\t\\n]{0,4} root\n";
  return std::make_shared<const Grammar>(Grammar::parse(text, "tandem-answer"));
}

}  // namespace tandem::grammar
