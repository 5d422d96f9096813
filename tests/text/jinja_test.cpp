// Semantics of the Jinja interpreter, one feature per test. Expected strings are what
// Python jinja2 (configured as transformers does) prints for the same source; the
// template_oracle_* tests check the same features against jinja2 itself.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "text/chat_template.h"
#include "text/jinja/template.h"

namespace tandem::jinja {
namespace {

std::string render(const std::string& src, const std::string& json_vars = "{}", const RenderLimits& limits = {}) {
  Variables vars;
  const auto parsed = nlohmann::ordered_json::parse(json_vars);
  for (const auto& [k, v] : parsed.items()) vars.emplace_back(k, Value::from_json(v));
  return Template::parse(src, "t").render(vars, text::chat_template_globals(), limits);
}

// The error message of rendering `src` (parse or runtime), or "" if it renders.
std::string error_of(const std::string& src, const std::string& json_vars = "{}", const RenderLimits& limits = {}) {
  try {
    render(src, json_vars, limits);
  } catch (const TemplateError& e) {
    return e.what();
  }
  return "";
}

TEST(Jinja, TextAndOutput) {
  EXPECT_EQ(render("Hello {{ name }}!", R"({"name": "you"})"), "Hello you!");
  EXPECT_EQ(render("{{ 1 }}{{ 1.5 }}{{ none }}{{ true }}{{ 'a' ~ 2 }}"), "11.5NoneTruea2");
}

TEST(Jinja, PythonNumberSemantics) {
  EXPECT_EQ(render("{{ 1/2 }} {{ 4/2 }} {{ 7//2 }} {{ -7//2 }} {{ 7%3 }} {{ -7%3 }} {{ 2**10 }}"), "0.5 2.0 3 -4 1 2 1024");
  EXPECT_EQ(render("{{ 1e20 }} {{ 1.5e-7 }} {{ 0.1+0.2 }} {{ 1e15 }} {{ 0.0001 }} {{ 1e16 }}"),
            "1e+20 1.5e-07 0.30000000000000004 1000000000000000.0 0.0001 1e+16");
  EXPECT_EQ(render("{{ 1 == 1.0 }}{{ true + 1 }}{{ 3 * 'ab' }}{{ [1] + [2] }}"), "True2ababab[1, 2]");
  EXPECT_NE(error_of("{{ 1 / 0 }}").find("division by zero"), std::string::npos);
}

TEST(Jinja, WhitespaceControlAsTransformers) {
  // trim_blocks drops the newline after a tag, lstrip_blocks the indentation before it.
  EXPECT_EQ(render("{% if true %}\n    yes\n    {% endif %}\nend"), "    yes\nend");
  EXPECT_EQ(render("a  {{- ' b ' -}}  c"), "a b c");
  EXPECT_EQ(render("a\n  {%- if true %}x{% endif -%}\n  b"), "axb");
  EXPECT_EQ(render("{# comment #}\nx"), "x");
  EXPECT_EQ(render("x\n"), "x");  // one trailing newline is dropped
  EXPECT_EQ(render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
  EXPECT_EQ(render("  {%+ if true %}k{% endif %}"), "  k");
}

TEST(Jinja, UndefinedSemantics) {
  EXPECT_EQ(render("[{{ missing }}][{{ missing|length }}][{{ missing is defined }}]"), "[][0][False]");
  EXPECT_EQ(render("{{ d.nope }}|{{ n.attr }}", R"({"d": {"a": 1}, "n": null})"), "|");
  EXPECT_NE(error_of("{{ missing.attr }}").find("'missing' is undefined"), std::string::npos);
  EXPECT_NE(error_of("{{ d.c + 1 }}", R"({"d": {"a": 1}})").find("'dict object' has no attribute 'c'"), std::string::npos);
  EXPECT_EQ(render("{% for x in missing %}x{% else %}empty{% endfor %}"), "empty");
}

TEST(Jinja, ForLoopVariables) {
  EXPECT_EQ(render("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
            "103TrueFalse3;212FalseFalse3;321FalseTrue3;");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }}{{ loop.cycle('a','b') }} {% endfor %}"), "-2a 1-3b 2-a ");
  EXPECT_EQ(render("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(render("{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}", R"({"d": {"b": 1, "a": 2}})"), "b=1;a=2;");
  EXPECT_EQ(render("{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "13");
}

TEST(Jinja, ScopingMatchesJinja2) {
  // A set inside a loop is local to each iteration; namespaces carry state out.
  EXPECT_EQ(render("{% set a = 9 %}{% for i in [1,2] %}{{ a }}{% set a = i %}{{ a }}{% endfor %}|{{ a }}"), "9192|9");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"), "6");
  EXPECT_EQ(render("{% if true %}{% set a = 1 %}{% endif %}{{ a }}"), "1");
}

TEST(Jinja, Macros) {
  EXPECT_EQ(render("{% macro m(a, b=2) %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, 3) }}{{ m(b=5, a=4) }}"), "121345");
  EXPECT_EQ(render("{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, z=2) }}"), "(1,){'z': 2}");
  EXPECT_EQ(render("{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}in{% endcall %}"), "[in]");
  EXPECT_NE(error_of("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}").find("takes not more than 1 argument"), std::string::npos);
  // Recursion is bounded.
  EXPECT_NE(error_of("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}").find("maximum macro call depth"), std::string::npos);
}

TEST(Jinja, SetBlockAndFilterBlock) {
  EXPECT_EQ(render("{% set x %}  hi  {% endset %}[{{ x }}]{% set y | trim %}  yo  {% endset %}[{{ y }}]"), "[  hi  ][yo]");
  EXPECT_EQ(render("{% filter upper %}abc{% endfilter %}"), "ABC");
  // transformers' AssistantTracker tag renders its body unchanged.
  EXPECT_EQ(render("{% generation %}x{{ 1 }}{% endgeneration %}"), "x1");
}

TEST(Jinja, StringMethods) {
  EXPECT_EQ(render("{{ ' x '.strip() }}|{{ 'xxayy'.lstrip('x') }}|{{ 'a\\n\\n'.rstrip('\\n') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}"),
            "x|ayy|a|['a', 'b', '', 'c']|['a', 'b']");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'aXa'.replace('a', 'b') }}{{ 'hi there'.title() }}{{ 'aBc'.upper() }}"),
            "TrueTruebXbHi ThereABC");
  EXPECT_EQ(render("{{ 'héllo'[::-1] }}{{ 'héllo'[1] }}{{ 'héllo'|length }}{{ 'abcdef'[1:4] }}"), "olléhé5bcd");
  EXPECT_EQ(render("{{ '{} and {}'.format(1, 'x') }}"), "1 and x");
}

TEST(Jinja, Filters) {
  EXPECT_EQ(render("{{ [3,1,2]|sort }}{{ [1,2,3]|first }}{{ [1,2,3]|last }}{{ [1,2]|join('-') }}{{ ['a','b']|map('upper')|list }}"),
            "[1, 2, 3]131-2['A', 'B']");
  EXPECT_EQ(render("{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='c')|join }}", R"({"msgs": [{"role": "user", "c": "a"}, {"role": "x", "c": "b"}, {"role": "user", "c": "c"}]})"),
            "ac");
  EXPECT_EQ(render("{{ missing|default('d') }}{{ ''|default('e', true) }}{{ '42'|int + 1 }}{{ '4.5'|float }}{{ 'x'|string }}{{ [1,1,2]|unique|list }}"),
            "de434.5x[1, 2]");
  EXPECT_EQ(render("{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}"), "a\n  b\n\n  c|  a\n  b");
  EXPECT_EQ(render("{{ d|dictsort }}{{ d|tojson }}", R"({"d": {"b": 1, "A": 2}})"), "[('A', 2), ('b', 1)]{\"b\": 1, \"A\": 2}");
  EXPECT_EQ(render("{{ ['<a>']|join }}{{ '<a>'|e }}{{ (s|safe) + '<b>' }}", R"({"s": "<i>"})"), "<a>&lt;a&gt;<i>&lt;b&gt;");
}

TEST(Jinja, TojsonLikeTransformers) {
  const std::string vars = R"({"x": {"k": "é\"\n", "n": [1, 2.5, true, null], "e": {}}})";
  EXPECT_EQ(render("{{ x|tojson }}", vars), R"({"k": "é\"\n", "n": [1, 2.5, true, null], "e": {}})");
  EXPECT_EQ(render("{{ x|tojson(indent=2) }}", vars), "{\n  \"k\": \"é\\\"\\n\",\n  \"n\": [\n    1,\n    2.5,\n    true,\n    null\n  ],\n  \"e\": {}\n}");
  EXPECT_EQ(render("{{ x|tojson(ensure_ascii=true, sort_keys=true, separators=(',', ':')) }}", vars),
            R"({"e":{},"k":"\u00e9\"\n","n":[1,2.5,true,null]})");
  EXPECT_NE(error_of("{{ missing|tojson }}").find("not JSON serializable"), std::string::npos);
}

TEST(Jinja, TestsAndOperators) {
  EXPECT_EQ(render("{{ 'a' is string }}{{ 1 is number }}{{ true is number }}{{ true is integer }}{{ d is mapping }}{{ d is iterable }}{{ none is none }}{{ 3 is odd }}",
                   R"({"d": {}})"),
            "TrueTrueTrueFalseTrueTrueTrueTrue");
  EXPECT_EQ(render("{{ 'b' in 'abc' }}{{ 2 in [1,2] }}{{ 'k' in d }}{{ 'z' not in d }}{{ 1 < 2 < 3 }}{{ not 1 }}", R"({"d": {"k": 1}})"),
            "TrueTrueTrueTrueTrueFalse");
  EXPECT_EQ(render("{{ 'yes' if x else 'no' }}{{ 'y' if not x }}|{{ x or 'dflt' }}{{ x and 'never' }}", R"({"x": 0})"), "noy|dflt0");
  EXPECT_EQ(render("{{ d.items()|list }}{{ d.get('a') }}{{ d.get('z', 5) }}{{ d.keys()|list }}{{ d['a'] }}", R"({"d": {"a": 1}})"),
            "[('a', 1)]15['a']1");
}

TEST(Jinja, ChatGlobals) {
  EXPECT_NE(error_of("{{ raise_exception('Bad role') }}").find("t:1:4: template raised an error: Bad role"), std::string::npos);
  const std::string year = render("{{ strftime_now('%Y') }}");
  EXPECT_EQ(year.size(), 4u);
  EXPECT_EQ(render("{{ range(3)|list }}{{ dict(a=1) }}"), "[0, 1, 2]{'a': 1}");
}

TEST(Jinja, SyntaxErrorsCarryLineAndColumn) {
  EXPECT_EQ(error_of("ab\n  {% if x %}\n{% endfor %}"), "t:3:1: unexpected 'endfor' inside 'if'");
  EXPECT_EQ(error_of("{{ 1 + }}"), "t:1:8: expected an expression, got end of print statement '}}'");
  EXPECT_EQ(error_of("{% if x %}never closed"), "t:1:23: unexpected end of template, expected 'elif' to close 'if'");
  EXPECT_EQ(error_of("{{ 'abc }}"), "t:1:4: unterminated string literal");
  EXPECT_EQ(error_of("line1\n{{ x | nosuchfilter }}"), "t:2:8: no filter named 'nosuchfilter'");
  EXPECT_EQ(error_of("{% frobnicate %}"), "t:1:1: unknown tag 'frobnicate'");
  EXPECT_EQ(error_of("{% break %}"), "t:1:1: 'break' outside of a loop");
  EXPECT_EQ(error_of("{{ (1 }}"), "t:1:7: unexpected '}', expected ')'");
  EXPECT_EQ(error_of("{# open comment"), "t:1:1: missing end of comment tag '#}'");
}

TEST(Jinja, RuntimeErrorsCarryLineAndColumn) {
  EXPECT_EQ(error_of("ok\n  {{ 'a' + 1 }}"), "t:2:10: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(error_of("{% for x in 5 %}{% endfor %}"), "t:1:13: 'int' object is not iterable");
  EXPECT_EQ(error_of("{{ x.y }}"), "t:1:5: 'x' is undefined");
}

TEST(Jinja, LimitsStopRunawayTemplates) {
  RenderLimits small;
  small.max_steps = 10000;
  EXPECT_NE(error_of("{% for i in range(100000) %}{{ i }}{% endfor %}", "{}", small).find("evaluation steps"), std::string::npos);
  small = {};
  small.max_output = 1000;
  EXPECT_NE(error_of("{{ 'x' * 5000 }}", "{}", small).find("exceeds the limit"), std::string::npos);
  EXPECT_NE(error_of("{{ range(1000000)|list }}").find("range too big"), std::string::npos);
  EXPECT_NE(error_of("{{ 2 ** 80 }}").find("integer overflow"), std::string::npos);
  const std::string deep = "{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}";
  EXPECT_NE(error_of(deep).find("nested too deeply"), std::string::npos);
}

TEST(ChatTemplate, RendersMessagesToolsAndExtraVariables) {
  text::ChatTemplate t(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
      "{% if tools %}{{ tools|tojson }}{% endif %}{% if add_generation_prompt %}<assistant>{% endif %}"
      "{{ enable_thinking }}{{ documents }}",
      "inline", "<s>", "</s>");
  text::ChatInputs in;
  in.messages = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "hi"}])");
  in.tools = nlohmann::ordered_json::parse(R"([{"name": "f", "a": 1}])");
  in.add_generation_prompt = true;
  in.extra["enable_thinking"] = false;
  EXPECT_EQ(t.render(in), "<s><user>hi[{\"name\": \"f\", \"a\": 1}]<assistant>FalseNone");
}

}  // namespace
}  // namespace tandem::jinja
