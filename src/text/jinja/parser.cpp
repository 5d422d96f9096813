#include "text/jinja/parser.h"

#include <cerrno>
#include <cstdlib>
#include <set>

#include "text/jinja/error.h"

namespace tandem::jinja {
namespace {

constexpr int kMaxNesting = 200;  // expression and block depth: bounded recursion on hostile input

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const std::string& source, const std::string& where)
      : t_(tokens), map_(source), where_(where) {}

  Body run() {
    Body body = parse_body({});
    if (cur().kind != Tok::End) fail_here("unexpected tag");
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return t_[pos_]; }
  const Token& peek(size_t n = 1) const { return t_[std::min(pos_ + n, t_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < t_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().kind == Tok::Operator && cur().text == op; }
  bool is_name(const char* name) const { return cur().kind == Tok::Name && cur().text == name; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Tok::Text: return "template text";
      case Tok::VarBegin: return "'{{'";
      case Tok::VarEnd: return "end of print statement '}}'";
      case Tok::BlockBegin: return "'{%'";
      case Tok::BlockEnd: return "end of statement block '%}'";
      case Tok::Name: return "'" + t.text + "'";
      case Tok::String: return "string";
      case Tok::Integer:
      case Tok::Float: return "number " + t.text;
      case Tok::Operator: return "'" + t.text + "'";
      case Tok::End: return "end of template";
    }
    return "token";
  }

  [[noreturn]] void fail_at(size_t offset, const std::string& message) const {
    throw TemplateError(where_, map_.at(offset), message);
  }
  [[noreturn]] void fail_here(const std::string& message) const { fail_at(cur().offset, message + ", got " + describe(cur())); }

  void expect_op(const char* op) {
    if (!skip_op(op)) fail_here(std::string("expected '") + op + "'");
  }
  void expect_block_end() {
    if (cur().kind != Tok::BlockEnd) fail_here("expected end of statement block '%}'");
    advance();
  }
  std::string expect_name() {
    if (cur().kind != Tok::Name) fail_here("expected a name");
    std::string n = cur().text;
    advance();
    return n;
  }

  struct Depth {
    Parser& p;
    explicit Depth(Parser& parser, size_t offset) : p(parser) {
      if (++p.depth_ > kMaxNesting) p.fail_at(offset, "template nested too deeply (more than 200 levels)");
    }
    ~Depth() { --p.depth_; }
  };

  static ExprPtr node(ExprKind kind, size_t offset) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->offset = offset;
    return e;
  }

  // ---- statements ----

  // Parses until a block tag whose name is in `ends` (left unconsumed, after its '{%').
  Body parse_body(const std::set<std::string>& ends) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.kind == Tok::End) {
        if (!ends.empty()) fail_at(t.offset, "unexpected end of template, expected '" + *ends.begin() + "' to close '" + open_tags_.back() + "'");
        return body;
      }
      if (t.kind == Tok::Text) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Text;
        s->offset = t.offset;
        s->text = t.text;
        body.push_back(std::move(s));
        advance();
      } else if (t.kind == Tok::VarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Output;
        s->offset = t.offset;
        advance();
        s->expr = parse_tuple(false, true, {});
        if (cur().kind != Tok::VarEnd) fail_here("expected end of print statement '}}'");
        advance();
        body.push_back(std::move(s));
      } else if (t.kind == Tok::BlockBegin) {
        if (peek().kind == Tok::Name && ends.count(peek().text)) {
          advance();
          return body;
        }
        advance();
        body.push_back(parse_statement(t.offset));
      } else {
        fail_here("unexpected token");
      }
    }
  }

  StmtPtr make_stmt(StmtKind kind, size_t offset) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->offset = offset;
    return s;
  }

  // Body of a block tag up to its end tag (consumed, with its '%}').
  Body block(const std::string& tag, const std::set<std::string>& ends, std::string* which = nullptr) {
    open_tags_.push_back(tag);
    Body body = parse_body(ends);
    open_tags_.pop_back();
    if (which) *which = cur().text;
    advance();  // the end name
    return body;
  }

  StmtPtr parse_statement(size_t offset) {
    Depth depth(*this, offset);
    if (cur().kind != Tok::Name) fail_here("tag name expected");
    const std::string tag = cur().text;
    advance();
    if (tag == "for") return parse_for(offset);
    if (tag == "if") return parse_if(offset);
    if (tag == "set") return parse_set(offset);
    if (tag == "macro") return parse_macro(offset);
    if (tag == "call") return parse_call_block(offset);
    if (tag == "filter") {
      auto s = make_stmt(StmtKind::FilterBlock, offset);
      s->filter = parse_filter(nullptr, true);
      expect_block_end();
      s->body = block("filter", {"endfilter"});
      expect_block_end();
      return s;
    }
    if (tag == "with") {
      auto s = make_stmt(StmtKind::With, offset);
      while (cur().kind != Tok::BlockEnd) {
        if (!s->assigns.empty()) expect_op(",");
        ExprPtr target = parse_assign_target(false, {});
        expect_op("=");
        s->assigns.emplace_back(std::move(target), parse_expression(true));
      }
      expect_block_end();
      s->body = block("with", {"endwith"});
      expect_block_end();
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) fail_at(offset, "'" + tag + "' outside of a loop");
      expect_block_end();
      return make_stmt(tag == "break" ? StmtKind::Break : StmtKind::Continue, offset);
    }
    if (tag == "generation") {
      auto s = make_stmt(StmtKind::Generation, offset);
      expect_block_end();
      s->body = block("generation", {"endgeneration"});
      expect_block_end();
      return s;
    }
    static const std::set<std::string> unsupported = {"extends", "block", "include", "import", "from", "do", "autoescape", "trans"};
    if (unsupported.count(tag)) fail_at(offset, "the '" + tag + "' tag is not supported in chat templates");
    if (tag.rfind("end", 0) == 0 || tag == "else" || tag == "elif")
      fail_at(offset, "unexpected '" + tag + "'" + (open_tags_.empty() ? std::string(" outside of any block") : " inside '" + open_tags_.back() + "'"));
    fail_at(offset, "unknown tag '" + tag + "'");
  }

  StmtPtr parse_for(size_t offset) {
    auto s = make_stmt(StmtKind::For, offset);
    s->target = parse_assign_target(true, {"in"});
    if (!skip_name("in")) fail_here("expected 'in'");
    s->expr = parse_tuple(false, false, {"recursive"});
    if (skip_name("if")) s->cond = parse_expression(true);
    if (is_name("recursive")) fail_here("recursive loops are not supported");
    expect_block_end();
    ++loop_depth_;
    std::string which;
    s->body = block("for", {"endfor", "else"}, &which);
    --loop_depth_;
    expect_block_end();
    if (which == "else") {
      s->else_body = block("for", {"endfor"});
      expect_block_end();
    }
    return s;
  }

  StmtPtr parse_if(size_t offset) {
    auto s = make_stmt(StmtKind::If, offset);
    ExprPtr cond = parse_tuple(false, false, {});
    while (true) {
      expect_block_end();
      std::string which;
      Body body = block("if", {"elif", "else", "endif"}, &which);
      s->branches.emplace_back(std::move(cond), std::move(body));
      if (which == "elif") {
        cond = parse_tuple(false, false, {});
        continue;
      }
      if (which == "else") {
        expect_block_end();
        s->branches.emplace_back(nullptr, block("if", {"endif"}));
      }
      expect_block_end();
      return s;
    }
  }

  StmtPtr parse_set(size_t offset) {
    ExprPtr target;
    if (cur().kind == Tok::Name && peek().kind == Tok::Operator && peek().text == "." && peek(2).kind == Tok::Name) {
      target = node(ExprKind::Attr, cur().offset);  // {% set ns.attr = value %}
      auto base = node(ExprKind::Name, cur().offset);
      base->name = cur().text;
      advance();
      advance();
      target->name = cur().text;
      target->a = std::move(base);
      advance();
    } else {
      target = parse_assign_target(true, {});
    }
    if (skip_op("=")) {
      auto s = make_stmt(StmtKind::Set, offset);
      s->target = std::move(target);
      s->expr = parse_tuple(false, true, {});
      expect_block_end();
      return s;
    }
    auto s = make_stmt(StmtKind::SetBlock, offset);
    if (target->kind == ExprKind::Attr) fail_at(offset, "block set cannot assign to an attribute");
    s->target = std::move(target);
    if (is_op("|")) s->filter = parse_filter(nullptr, false);
    expect_block_end();
    s->body = block("set", {"endset"});
    expect_block_end();
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    while (!skip_op(")")) {
      if (!s.params.empty()) expect_op(",");
      if (skip_op(")")) break;
      const size_t at = cur().offset;
      s.params.push_back(expect_name());
      if (skip_op("=")) {
        s.defaults.push_back(parse_expression(true));
      } else {
        if (!s.defaults.empty() && s.defaults.back()) fail_at(at, "non-default argument follows default argument");
        s.defaults.push_back(nullptr);
      }
    }
  }

  StmtPtr parse_macro(size_t offset) {
    auto s = make_stmt(StmtKind::Macro, offset);
    s->text = expect_name();
    parse_signature(*s);
    expect_block_end();
    const int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = block("macro", {"endmacro"});
    loop_depth_ = saved;
    if (cur().kind == Tok::Name) advance();  // `{% endmacro name %}`
    expect_block_end();
    return s;
  }

  StmtPtr parse_call_block(size_t offset) {
    auto s = make_stmt(StmtKind::CallBlock, offset);
    if (is_op("(")) parse_signature(*s);
    s->expr = parse_expression(true);
    if (s->expr->kind != ExprKind::Call) fail_at(s->expr->offset, "expected a call after 'call'");
    expect_block_end();
    const int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = block("call", {"endcall"});
    loop_depth_ = saved;
    expect_block_end();
    return s;
  }

  // A name or tuple of names (for/set/with targets).
  ExprPtr parse_assign_target(bool with_tuple, const std::set<std::string>& extra_end) {
    ExprPtr target = with_tuple ? parse_tuple(true, true, extra_end) : parse_primary();
    auto check = [&](const Expr& e) {
      if (e.kind != ExprKind::Name) fail_at(e.offset, "can't assign to this expression");
      if (e.name == "true" || e.name == "false" || e.name == "none" || e.name == "True" || e.name == "False" || e.name == "None")
        fail_at(e.offset, "can't assign to '" + e.name + "'");
    };
    if (target->kind == ExprKind::Tuple) {
      for (const auto& item : target->items) check(*item);
    } else {
      check(*target);
    }
    return target;
  }

  // ---- expressions (jinja2 precedence) ----

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    ExprPtr e = parse_or();
    while (is_name("if")) {
      const size_t at = cur().offset;
      advance();
      auto c = node(ExprKind::CondExpr, at);
      c->a = parse_or();
      c->b = std::move(e);
      if (skip_name("else")) c->c = parse_condexpr();
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r, size_t at) {
    auto e = node(ExprKind::Binary, at);
    e->name = op;
    e->a = std::move(l);
    e->b = std::move(r);
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const size_t at = cur().offset;
      advance();
      e = binary("or", std::move(e), parse_and(), at);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const size_t at = cur().offset;
      advance();
      e = binary("and", std::move(e), parse_not(), at);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Depth depth(*this, cur().offset);
      auto e = node(ExprKind::Unary, cur().offset);
      advance();
      e->name = "not";
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const size_t at = cur().offset;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().kind == Tok::Operator && (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
                                          cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().kind == Tok::Name && peek().text == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(ExprKind::Compare, at);
        cmp->a = std::move(first);
      }
      cmp->ops.push_back(op);
      cmp->items.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = cur().text;
      const size_t at = cur().offset;
      advance();
      e = binary(op, std::move(e), parse_concat(), at);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const size_t at = cur().offset;
      advance();
      e = binary("~", std::move(e), parse_math2(), at);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = cur().text;
      const size_t at = cur().offset;
      advance();
      e = binary(op, std::move(e), parse_pow(), at);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const size_t at = cur().offset;
      advance();
      e = binary("**", std::move(e), parse_unary(true), at);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    Depth depth(*this, cur().offset);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = node(ExprKind::Unary, cur().offset);
      e->name = cur().text;
      advance();
      e->a = parse_unary(false);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr literal(Value v, size_t at) {
    auto e = node(ExprKind::Literal, at);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_primary() {
    Depth depth(*this, cur().offset);
    const Token& t = cur();
    const size_t at = t.offset;
    switch (t.kind) {
      case Tok::Name: {
        advance();
        if (t.text == "true" || t.text == "True") return literal(Value::boolean(true), at);
        if (t.text == "false" || t.text == "False") return literal(Value::boolean(false), at);
        if (t.text == "none" || t.text == "None") return literal(Value::none(), at);
        auto e = node(ExprKind::Name, at);
        e->name = t.text;
        return e;
      }
      case Tok::String: {
        std::string s = t.text;
        advance();
        while (cur().kind == Tok::String) {  // adjacent literals concatenate
          s += cur().text;
          advance();
        }
        return literal(Value::string(std::move(s)), at);
      }
      case Tok::Integer: {
        advance();
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(t.text.c_str(), &end, 10);
        if (errno == ERANGE) fail_at(at, "integer literal too large");
        return literal(Value::integer(v), at);
      }
      case Tok::Float: {
        advance();
        return literal(Value::number(std::strtod(t.text.c_str(), nullptr)), at);
      }
      case Tok::Operator:
        if (t.text == "(") {
          advance();
          ExprPtr e = parse_tuple(false, true, {}, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          advance();
          auto e = node(ExprKind::List, at);
          while (!skip_op("]")) {
            if (!e->items.empty()) expect_op(",");
            if (skip_op("]")) break;
            e->items.push_back(parse_expression(true));
          }
          return e;
        }
        if (t.text == "{") {
          advance();
          auto e = node(ExprKind::Dict, at);
          while (!skip_op("}")) {
            if (!e->items.empty()) expect_op(",");
            if (skip_op("}")) break;
            e->items.push_back(parse_expression(true));
            expect_op(":");
            e->items.push_back(parse_expression(true));
          }
          return e;
        }
        break;
      default: break;
    }
    fail_here("expected an expression");
  }

  bool tuple_end(const std::set<std::string>& extra_end) const {
    if (cur().kind == Tok::VarEnd || cur().kind == Tok::BlockEnd || cur().kind == Tok::End) return true;
    if (is_op(")")) return true;
    return cur().kind == Tok::Name && extra_end.count(cur().text);
  }

  // Comma-separated expressions: a tuple if there is a comma, else the single expression.
  ExprPtr parse_tuple(bool simplified, bool with_condexpr, const std::set<std::string>& extra_end, bool explicit_parens = false) {
    const size_t at = cur().offset;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (tuple_end(extra_end)) break;
      items.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) fail_here("expected an expression");
    }
    auto e = node(ExprKind::Tuple, at);
    e->items = std::move(items);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter(std::move(e), false);
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr e) {
    Depth depth(*this, cur().offset);
    const size_t at = cur().offset;
    if (skip_op(".")) {
      if (cur().kind == Tok::Name) {
        auto g = node(ExprKind::Attr, at);
        g->name = cur().text;
        g->a = std::move(e);
        advance();
        return g;
      }
      if (cur().kind == Tok::Integer) {
        auto g = node(ExprKind::Item, at);
        g->a = std::move(e);
        errno = 0;
        const long long index = std::strtoll(cur().text.c_str(), nullptr, 10);
        if (errno == ERANGE) fail_at(cur().offset, "integer literal too large");
        g->b = literal(Value::integer(index), cur().offset);
        advance();
        return g;
      }
      fail_here("expected a name after '.'");
    }
    expect_op("[");
    std::vector<ExprPtr> args;
    while (!skip_op("]")) {
      if (!args.empty()) {
        expect_op(",");
        if (skip_op("]")) break;
      }
      args.push_back(parse_subscribed());
    }
    if (args.empty()) fail_at(at, "expected a subscript");
    if (args.size() > 1)
      for (const auto& a : args)
        if (a->kind == ExprKind::Slice) fail_at(a->offset, "a slice cannot be part of a tuple subscript");
    ExprPtr index;
    if (args.size() == 1) {
      index = std::move(args[0]);
    } else {
      index = node(ExprKind::Tuple, at);
      index->items = std::move(args);
    }
    if (index->kind == ExprKind::Slice) {
      index->a = std::move(e);
      return index;
    }
    auto g = node(ExprKind::Item, at);
    g->a = std::move(e);
    g->b = std::move(index);
    return g;
  }

  // One subscript: an expression or a slice (start:stop:step, parts optional).
  ExprPtr parse_subscribed() {
    const size_t at = cur().offset;
    ExprPtr start;
    if (!is_op(":")) {
      start = parse_expression(true);
      if (!is_op(":")) return start;
    }
    advance();  // ':'
    auto s = node(ExprKind::Slice, at);
    s->items.resize(3);
    s->items[0] = std::move(start);
    if (!is_op("]") && !is_op(",") && !is_op(":")) s->items[1] = parse_expression(true);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) s->items[2] = parse_expression(true);
    }
    return s;
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    bool first = true;
    while (!skip_op(")")) {
      if (!first) {
        expect_op(",");
        if (skip_op(")")) break;
      }
      first = false;
      if (is_op("*") || is_op("**")) fail_here("*args and **kwargs in calls are not supported");
      if (cur().kind == Tok::Name && peek().kind == Tok::Operator && peek().text == "=") {
        std::string key = cur().text;
        advance();
        advance();
        call.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!call.kwargs.empty()) fail_here("positional argument follows keyword argument");
        call.items.push_back(parse_expression(true));
      }
    }
  }

  ExprPtr parse_call(ExprPtr e) {
    Depth depth(*this, cur().offset);
    auto c = node(ExprKind::Call, e->offset);  // errors point at the callee
    c->a = std::move(e);
    parse_call_args(*c);
    return c;
  }

  std::string dotted_name() {
    std::string name = expect_name();
    while (is_op(".") && peek().kind == Tok::Name) {
      advance();
      name += "." + cur().text;
      advance();
    }
    return name;
  }

  ExprPtr parse_filter(ExprPtr e, bool start_inline) {
    while (is_op("|") || start_inline) {
      Depth depth(*this, cur().offset);
      if (!start_inline) advance();
      start_inline = false;
      auto f = node(ExprKind::Filter, cur().offset);
      f->name = dotted_name();
      if (is_op("(")) parse_call_args(*f);
      f->a = std::move(e);
      e = std::move(f);
    }
    return e;
  }

  ExprPtr parse_test(ExprPtr e) {
    Depth depth(*this, cur().offset);
    auto t = node(ExprKind::Test, cur().offset);
    advance();  // 'is'
    t->negated = skip_name("not");
    t->name = dotted_name();
    if (is_op("(")) {
      parse_call_args(*t);
    } else if ((cur().kind == Tok::Name || cur().kind == Tok::String || cur().kind == Tok::Integer || cur().kind == Tok::Float ||
                is_op("(") || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail_here("cannot chain multiple tests with 'is'");
      t->items.push_back(parse_postfix(parse_primary()));
    }
    t->a = std::move(e);
    return t;
  }

  const std::vector<Token>& t_;
  SourceMap map_;
  const std::string& where_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::string> open_tags_;
};

}  // namespace

Body parse(const std::vector<Token>& tokens, const std::string& source, const std::string& where) {
  return Parser(tokens, source, where).run();
}

}  // namespace tandem::jinja
