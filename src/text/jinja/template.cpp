#include "text/jinja/template.h"

#include "text/jinja/lexer.h"
#include "text/jinja/parser.h"

namespace tandem::jinja {
namespace {

// jinja2 resolves filter and test names at compile time.
void check_names(const Expr* e, const SourceMap& map, const std::string& where);

void check_names(const Body& body, const SourceMap& map, const std::string& where) {
  for (const auto& s : body) {
    check_names(s->expr.get(), map, where);
    check_names(s->target.get(), map, where);
    check_names(s->cond.get(), map, where);
    check_names(s->filter.get(), map, where);
    check_names(s->body, map, where);
    check_names(s->else_body, map, where);
    for (const auto& [c, b] : s->branches) {
      check_names(c.get(), map, where);
      check_names(b, map, where);
    }
    for (const auto& d : s->defaults) check_names(d.get(), map, where);
    for (const auto& [t, v] : s->assigns) check_names(v.get(), map, where);
  }
}

void check_names(const Expr* e, const SourceMap& map, const std::string& where) {
  if (!e) return;
  if (e->kind == ExprKind::Filter && !filters().count(e->name))
    throw TemplateError(where, map.at(e->offset), "no filter named '" + e->name + "'");
  if (e->kind == ExprKind::Test && !tests().count(e->name))
    throw TemplateError(where, map.at(e->offset), "no test named '" + e->name + "'");
  check_names(e->a.get(), map, where);
  check_names(e->b.get(), map, where);
  check_names(e->c.get(), map, where);
  for (const auto& i : e->items) check_names(i.get(), map, where);
  for (const auto& [k, v] : e->kwargs) check_names(v.get(), map, where);
}

}  // namespace

Template Template::parse(std::string_view source, std::string name) {
  Template t;
  t.name_ = std::make_shared<const std::string>(std::move(name));
  t.source_ = std::make_shared<const std::string>(normalize_source(source));
  const auto tokens = tokenize(*t.source_, *t.name_, LexerOptions{});
  auto body = std::make_shared<Body>(jinja::parse(tokens, *t.source_, *t.name_));
  check_names(*body, SourceMap(*t.source_), *t.name_);
  t.body_ = std::move(body);
  return t;
}

std::string Template::render(const Variables& vars, const Variables& globals, const RenderLimits& limits) const {
  Variables all = default_globals();
  all.insert(all.end(), globals.begin(), globals.end());
  Interpreter in(*source_, *name_, limits);
  return in.render(*body_, all, vars);
}

}  // namespace tandem::jinja
