#include "text/jinja/lexer.h"

#include <cctype>
#include <cerrno>
#include <cstring>

#include "text/jinja/error.h"
#include "text/jinja/value.h"

namespace tandem::jinja {

SourceMap::SourceMap(std::string_view source) : source_(source) {
  line_starts_.push_back(0);
  for (size_t i = 0; i < source.size(); ++i)
    if (source[i] == '\n') line_starts_.push_back(i + 1);
}

SourcePos SourceMap::at(size_t offset) const {
  offset = std::min(offset, source_.size());
  size_t lo = 0, hi = line_starts_.size();
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    (line_starts_[mid] <= offset ? lo : hi) = mid;
  }
  const auto column = utf8_length(source_.substr(line_starts_[lo], offset - line_starts_[lo]));
  return {static_cast<int>(lo + 1), static_cast<int>(column + 1)};
}

std::string normalize_source(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

namespace {

// Python's str.isspace over UTF-8: returns the byte length of a whitespace character at
// `pos`, or 0.
size_t space_at(const std::string& s, size_t pos) {
  const auto c = static_cast<unsigned char>(s[pos]);
  if (c < 0x80) return is_py_space(c) ? 1 : 0;
  size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || pos + len > s.size()) return 0;
  const auto cps = utf8_decode(std::string_view(s).substr(pos, len));
  return cps.size() == 1 && is_py_space(cps[0]) ? len : 0;
}

// str.rstrip() with no argument.
std::string rstrip_space(const std::string& s) {
  const auto cps = utf8_decode(s);
  size_t end = cps.size();
  while (end > 0 && is_py_space(cps[end - 1])) --end;
  return utf8_encode(cps, 0, end);
}

bool all_space(const std::string& s, size_t from) {
  for (uint32_t cp : utf8_decode(std::string_view(s).substr(from)))
    if (!is_py_space(cp)) return false;
  return true;
}

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  Lexer(const std::string& src, const std::string& where, const LexerOptions& options)
      : s_(src), where_(where), map_(src), opt_(options) {}

  std::vector<Token> run() {
    while (pos_ < s_.size()) {
      const size_t tag = find_tag(pos_);
      if (tag == std::string::npos) {
        emit_text(s_.substr(pos_), pos_);
        break;
      }
      std::string text = s_.substr(pos_, tag - pos_);
      const char kind = s_[tag + 1];  // '{', '%' or '#'
      const char sign = tag + 2 < s_.size() ? s_[tag + 2] : '\0';
      if (sign == '-') {
        text = rstrip_space(text);
      } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
        // A block or comment alone on its line: drop the indentation before it.
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting_) && l_pos < text.size() && all_space(text, l_pos)) text.resize(l_pos);
      }
      emit_text(std::move(text), pos_);
      size_t after = tag + 2 + (sign == '-' || sign == '+' ? 1 : 0);
      if (kind == '#') {
        comment(tag, after);
      } else if (kind == '%' && raw_begin(tag, after)) {
        continue;
      } else {
        tag_body(kind, tag, after);
      }
    }
    tokens_.push_back({Tok::End, "", s_.size()});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(size_t offset, const std::string& message) { throw TemplateError(where_, map_.at(offset), message); }

  size_t find_tag(size_t from) const {
    for (size_t i = s_.find('{', from); i != std::string::npos; i = s_.find('{', i + 1)) {
      if (i + 1 < s_.size() && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  void emit_text(std::string text, size_t offset) {
    if (!text.empty()) tokens_.push_back({Tok::Text, std::move(text), offset});
  }

  // After `%}` or `#}` (or `}}`): the `-` form eats all following whitespace, the plain
  // block form eats one newline when trim_blocks is on.
  void finish_tag(size_t end, bool strip, bool plus, bool block_like) {
    pos_ = end;
    if (strip) {
      while (pos_ < s_.size()) {
        const size_t n = space_at(s_, pos_);
        if (!n) break;
        pos_ += n;
      }
    } else if (!plus && block_like && opt_.trim_blocks && pos_ < s_.size() && s_[pos_] == '\n') {
      ++pos_;
    }
    line_starting_ = pos_ > 0 && s_[pos_ - 1] == '\n';
  }

  void comment(size_t tag, size_t after) {
    const size_t end = s_.find("#}", after);
    if (end == std::string::npos) error(tag, "missing end of comment tag '#}'");
    const bool strip = end > after && s_[end - 1] == '-';
    const bool plus = end > after && s_[end - 1] == '+';
    finish_tag(end + 2, strip, plus, true);
  }

  size_t skip_ws(size_t p) const {
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t' || s_[p] == '\n' || s_[p] == '\v' || s_[p] == '\f')) ++p;
    return p;
  }

  bool word_at(size_t p, const char* word) const {
    const size_t n = std::strlen(word);
    return s_.compare(p, n, word) == 0 && (p + n >= s_.size() || !is_name_char(s_[p + n]));
  }

  // {% raw %} ... {% endraw %}: the text in between is copied untouched.
  bool raw_begin(size_t tag, size_t after) {
    size_t p = skip_ws(after);
    if (!word_at(p, "raw")) return false;
    p = skip_ws(p + 3);
    bool strip = false;
    if (s_.compare(p, 3, "-%}") == 0) {
      strip = true;
      p += 3;
    } else if (s_.compare(p, 2, "%}") == 0) {
      p += 2;
    } else {
      return false;
    }
    finish_tag(p, strip, true, false);  // jinja2 applies no trim_blocks after {% raw %}
    for (size_t q = find_tag(pos_); q != std::string::npos; q = find_tag(q + 1)) {
      if (s_[q + 1] != '%') continue;
      const char sign = q + 2 < s_.size() ? s_[q + 2] : '\0';
      size_t r = skip_ws(q + 2 + (sign == '-' || sign == '+' ? 1 : 0));
      if (!word_at(r, "endraw")) continue;
      r = skip_ws(r + 6);
      bool end_strip = false, end_plus = false;
      if (s_.compare(r, 3, "-%}") == 0) {
        end_strip = true;
        r += 3;
      } else if (s_.compare(r, 3, "+%}") == 0) {
        end_plus = true;
        r += 3;
      } else if (s_.compare(r, 2, "%}") == 0) {
        r += 2;
      } else {
        continue;
      }
      std::string text = s_.substr(pos_, q - pos_);
      if (sign == '-') {
        text = rstrip_space(text);
      } else if (sign != '+' && opt_.lstrip_blocks) {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting_) && l_pos < text.size() && all_space(text, l_pos)) text.resize(l_pos);
      }
      emit_text(std::move(text), pos_);
      finish_tag(r, end_strip, end_plus, true);
      return true;
    }
    error(tag, "missing end of raw directive '{% endraw %}'");
  }

  // The expression tokens of {{ ... }} or {% ... %}, up to the closing delimiter.
  void tag_body(char kind, size_t tag, size_t p) {
    const bool is_var = kind == '{';
    tokens_.push_back({is_var ? Tok::VarBegin : Tok::BlockBegin, "", tag});
    std::vector<char> balance;
    const char close = is_var ? '}' : '%';
    while (true) {
      while (p < s_.size()) {
        const size_t n = space_at(s_, p);
        if (!n) break;
        p += n;
      }
      if (p >= s_.size()) error(tag, is_var ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
      // The closing delimiter counts only when brackets are balanced (`{{ {'a': 1}}}`).
      if (balance.empty()) {
        const bool dash = s_[p] == '-' || (!is_var && s_[p] == '+');
        const size_t q = dash ? p + 1 : p;
        if (q + 1 < s_.size() && s_[q] == close && s_[q + 1] == '}') {
          tokens_.push_back({is_var ? Tok::VarEnd : Tok::BlockEnd, "", p});
          finish_tag(q + 2, dash && s_[p] == '-', dash && s_[p] == '+', !is_var);
          return;
        }
      }
      const char c = s_[p];
      if (c == '\'' || c == '"') {
        p = string_literal(p);
      } else if (is_digit(c)) {
        p = number(p);
      } else if (is_name_start(c) || static_cast<unsigned char>(c) >= 0x80) {
        if (static_cast<unsigned char>(c) >= 0x80) error(p, "unexpected character in tag");
        size_t e = p;
        while (e < s_.size() && is_name_char(s_[e])) ++e;
        tokens_.push_back({Tok::Name, s_.substr(p, e - p), p});
        p = e;
      } else {
        p = op(p, balance);
      }
    }
  }

  size_t op(size_t p, std::vector<char>& balance) {
    static const char* const two[] = {"//", "**", "==", "!=", "<=", ">="};
    for (const char* t : two) {
      if (s_.compare(p, 2, t) == 0) {
        tokens_.push_back({Tok::Operator, t, p});
        return p + 2;
      }
    }
    const char c = s_[p];
    if (!std::strchr("+-*/%~()[]{},.:|=<>;", c) || c == '\0') {
      error(p, std::string("unexpected character '") + c + "' in tag");
    }
    if (c == '(' || c == '[' || c == '{') balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) error(p, std::string("unexpected '") + c + "'");
      if (balance.back() != c) error(p, std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
      balance.pop_back();
    }
    tokens_.push_back({Tok::Operator, std::string(1, c), p});
    return p + 1;
  }

  size_t number(size_t p) {
    const size_t start = p;
    auto digits = [&](auto pred) {
      size_t n = 0;
      while (p < s_.size() && (pred(s_[p]) || (s_[p] == '_' && p + 1 < s_.size() && pred(s_[p + 1]) && n))) ++p, ++n;
      return n;
    };
    if (s_[p] == '0' && p + 1 < s_.size() && std::strchr("xXoObB", s_[p + 1])) {
      const char base = static_cast<char>(s_[p + 1] | 0x20);
      p += 2;
      auto pred = [base](char c) {
        if (base == 'b') return c == '0' || c == '1';
        if (base == 'o') return c >= '0' && c <= '7';
        return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
      };
      if (p < s_.size() && s_[p] == '_') ++p;
      if (!digits(pred)) error(start, "invalid integer literal");
      std::string body;
      for (size_t k = start + 2; k < p; ++k)
        if (s_[k] != '_') body += s_[k];
      errno = 0;
      const long long v = std::strtoll(body.c_str(), nullptr, base == 'b' ? 2 : base == 'o' ? 8 : 16);
      if (errno == ERANGE) error(start, "integer literal too large (tandem integers are 64-bit)");
      tokens_.push_back({Tok::Integer, std::to_string(v), start});
      return p;
    }
    digits(is_digit);
    bool is_float = false;
    if (p + 1 < s_.size() && s_[p] == '.' && is_digit(s_[p + 1])) {
      ++p;
      digits(is_digit);
      is_float = true;
    }
    if (p < s_.size() && (s_[p] == 'e' || s_[p] == 'E')) {
      size_t q = p + 1;
      if (q < s_.size() && (s_[q] == '+' || s_[q] == '-')) ++q;
      if (q < s_.size() && is_digit(s_[q])) {
        p = q;
        digits(is_digit);
        is_float = true;
      }
    }
    std::string body;
    for (size_t k = start; k < p; ++k)
      if (s_[k] != '_') body += s_[k];
    tokens_.push_back({is_float ? Tok::Float : Tok::Integer, body, start});
    return p;
  }

  // A quoted string with Python's unicode-escape decoding, as jinja2 applies to literals.
  size_t string_literal(size_t p) {
    const char q = s_[p];
    const size_t start = p++;
    std::string out;
    while (true) {
      if (p >= s_.size()) error(start, "unterminated string literal");
      const char c = s_[p];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= s_.size()) error(start, "unterminated string literal");
      const char e = s_[p + 1];
      p += 2;
      auto hex = [&](int n) {
        uint32_t v = 0;
        for (int k = 0; k < n; ++k, ++p) {
          if (p >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[p])))
            error(p - 2 - k, std::string("truncated \\") + e + " escape in string literal");
          const char h = static_cast<char>(s_[p] | 0x20);
          v = v * 16 + (is_digit(h) ? h - '0' : h - 'a' + 10);
        }
        return v;
      };
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': utf8_append(out, hex(2)); break;
        case 'u': {
          const uint32_t cp = hex(4);
          if (cp >= 0xd800 && cp <= 0xdfff) error(start, "surrogate code point in string literal");
          utf8_append(out, cp);
          break;
        }
        case 'U': {
          const uint32_t cp = hex(8);
          if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) error(start, "illegal Unicode character in string literal");
          utf8_append(out, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = e - '0';
            for (int k = 0; k < 2 && p < s_.size() && s_[p] >= '0' && s_[p] <= '7'; ++k) v = v * 8 + (s_[p++] - '0');
            utf8_append(out, v);
          } else if (e == 'N') {
            error(start, "\\N{...} escapes are not supported");
          } else {
            out += '\\';  // unknown escapes stay as written
            --p;
          }
      }
    }
    tokens_.push_back({Tok::String, std::move(out), start});
    return p + 1;
  }

  const std::string& s_;
  const std::string& where_;
  SourceMap map_;
  LexerOptions opt_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  bool line_starting_ = true;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source, const std::string& where, const LexerOptions& options) {
  return Lexer(source, where, options).run();
}

}  // namespace tandem::jinja
