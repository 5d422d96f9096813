// JSON Schema -> GBNF: per keyword, JSON texts the grammar must accept and reject; integer
// ranges checked value by value; `pattern` translations against std::regex (ECMAScript)
// on random strings; unsupported keywords and regex features named in the error.
#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "grammar/structured_output.h"

namespace tandem::grammar {
namespace {

using OJson = nlohmann::ordered_json;

Grammar schema_grammar(const std::string& schema) {
  const std::string gbnf = json_schema_to_gbnf(OJson::parse(schema));
  try {
    return Grammar::parse(gbnf);
  } catch (const Error& e) {
    ADD_FAILURE() << e.what() << "\n" << gbnf;
    throw;
  }
}

struct Case {
  const char* schema;
  std::vector<std::string> accept, reject;
};

TEST(JsonSchema, KeywordCases) {
  const Case cases[] = {
      {R"({"type": "string"})", {R"("")", R"("héllo \"q\" \n \u00e9")"}, {R"(")", "1", R"("a)", "\"\x01\""}},
      {R"({"type": "integer"})", {"0", "-7", "1234567890123456"}, {"01", "1.5", "-", "12345678901234567", "\"1\""}},
      {R"({"type": "number"})", {"0", "-1.25", "3e10", "2.5E-3"}, {".5", "1.", "--1", "1e"}},
      {R"({"type": "boolean"})", {"true", "false"}, {"True", "1"}},
      {R"({"type": "null"})", {"null"}, {"nil", ""}},
      {R"({"type": ["string", "null"]})", {"null", R"("x")"}, {"1"}},
      {R"({"enum": ["red", 2, null, {"a": [1]}]})", {R"("red")", "2", "null", R"({"a":[1]})"}, {R"("blue")", "3"}},
      {R"({"const": "fixed"})", {R"("fixed")"}, {R"("other")"}},
      {R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a"]})",
       {R"({"a": 1})", R"({"a": 1, "b": "x"})", "{\n  \"a\": 1,\n  \"b\": \"x\"\n}", R"({ "a" : 1 })"},
       {"{}", R"({"b": "x"})", R"({"b": "x", "a": 1})", R"({"a": 1, "c": 2})", R"({"a": "1"})", R"({"a": 1,})"}},
      {R"({"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}, "z": {"type": "integer"}}})",
       {"{}", R"({"y": 2})", R"({"x": 1, "z": 3})", R"({"x": 1, "y": 2, "z": 3})"},
       {R"({"z": 3, "x": 1})", R"({, "y": 2})", R"({"y": 2,})"}},
      {R"({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"], "additionalProperties": true})",
       {R"({"id": 1})", R"({"id": 1, "name": "x", "i": [true]})", R"({"id": 1, "idx": 2})"},
       {R"({"id": 1, "id": 2})", R"({"name": "x"})"}},
      {R"({"type": "object", "additionalProperties": {"type": "integer"}})",
       {"{}", R"({"a": 1, "b": 2})"},
       {R"({"a": "x"})"}},
      {R"({"type": "object"})", {"{}", R"({"k": [1, {"z": null}]})"}, {"[]", "1"}},
      {R"({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3})",
       {"[1]", "[1, 2, 3]", "[ 1 ,2 ]"},
       {"[]", "[1, 2, 3, 4]", "[\"a\"]", "[1,]"}},
      {R"({"type": "array", "maxItems": 0})", {"[]"}, {"[1]"}},
      {R"({"type": "array"})", {"[]", R"([1, "a", null, []])"}, {"[", "{}"}},
      {R"({"type": "string", "minLength": 2, "maxLength": 3})", {R"("ab")", R"("abc")", R"("a\n")"}, {R"("a")", R"("abcd")"}},
      {R"({"type": "string", "format": "date"})", {R"("2024-02-28")", R"("1999-12-31")"},
       {R"("2024-02-30")", R"("2024-13-01")", R"("2024-04-31")", R"("24-01-01")"}},
      {R"({"type": "string", "format": "time"})", {R"("23:59:59Z")", R"("00:00:00.5+01:00")"}, {R"("24:00:00Z")", R"("12:00:00")"}},
      {R"({"type": "string", "format": "date-time"})", {R"("2024-01-02T03:04:05Z")"}, {R"("2024-01-02 03:04:05Z")"}},
      {R"({"type": "string", "format": "uuid"})", {R"("123e4567-e89b-12d3-a456-426614174000")"}, {R"("123e4567e89b12d3a456426614174000")"}},
      {R"({"type": "string", "format": "email"})", {R"("a.b@example.com")"}, {R"("a.example.com")", R"("@x.com")"}},
      {R"({"type": "string", "format": "ipv4"})", {R"("192.168.0.255")"}, {R"("256.1.1.1")", R"("01.1.1.1")"}},
      {R"({"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"})", {R"("AB-123")"}, {R"("AB-12")", R"("ab-123")", R"("xAB-123")"}},
      {R"({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]})", {"5", R"("x")"}, {R"("xy")", "true"}},
      {R"({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}, "required": ["v", "next"]}}, "$ref": "#/$defs/node"})",
       {R"({"v": 1, "next": null})", R"({"v": 1, "next": {"v": 2, "next": {"v": 3, "next": null}}})"},
       {R"({"v": 1})", R"({"v": 1, "next": {"v": 2}})"}},
      {R"({"type": "integer", "minimum": -5, "exclusiveMaximum": 10})", {"-5", "0", "9"}, {"-6", "10"}},
      {R"({"type": "number", "minimum": -1.5, "maximum": 2})", {"-1", "0.25", "-0.75", "2", "1.999"}, {"2.5", "-2", "3"}},
      {R"({"allOf": [{"type": "boolean"}]})", {"true"}, {"1"}},
      {"true", {"1", R"({"a": []})"}, {""}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.schema);
    const Grammar g = schema_grammar(c.schema);
    for (const std::string& s : c.accept) EXPECT_TRUE(g.matches(s)) << "should accept " << s;
    for (const std::string& s : c.reject) EXPECT_FALSE(g.matches(s)) << "should reject " << s;
  }
}

TEST(JsonSchema, IntegerRangesAreExact) {
  const std::pair<int64_t, int64_t> ranges[] = {{0, 0}, {1, 9}, {0, 255}, {-128, 127}, {7, 1234}, {-1000, -17},
                                                {95, 105}, {-3, 3}, {100, 100}, {19, 2001}};
  for (const auto& [lo, hi] : ranges) {
    const Grammar g = schema_grammar(fmt::format(R"({{"type": "integer", "minimum": {}, "maximum": {}}})", lo, hi));
    for (int64_t v = lo - 120; v <= hi + 120; ++v) {
      ASSERT_EQ(g.matches(std::to_string(v)), v >= lo && v <= hi) << v << " in [" << lo << ", " << hi << "]";
    }
    EXPECT_FALSE(g.matches("0" + std::to_string(std::max<int64_t>(lo, 1))));  // no leading zeros
  }
}

TEST(JsonSchema, BoundedNumbersStayInRange) {
  const Grammar g = schema_grammar(R"({"type": "number", "minimum": -2.5, "maximum": 3.7})");
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> value(-6, 6);
  int accepted = 0;
  for (int i = 0; i < 4000; ++i) {
    const std::string text = fmt::format("{:.{}f}", value(rng), i % 4);
    if (g.matches(text)) {
      ++accepted;
      const double v = std::stod(text);
      EXPECT_TRUE(v >= -2.5 && v <= 3.7) << text;
    }
  }
  EXPECT_GT(accepted, 1000);  // most of the range is reachable
}

TEST(JsonSchema, PatternsMatchLikeStdRegex) {
  const char* patterns[] = {"^a+b*$", "^(ab|cd)?[0-9]{2,3}$", "x.z", "^[^0-9 ]+$", "^\\d{2}-\\w+$", "^(a|b)+(?:c|d)*$",
                            "^[a-c\\d]{1,4}@$", "^\\s?Z$", "b$", "^0|1$", "^.{2}$", "^[.]+$"};
  const std::string alphabet = "abcdxyzZ019 -_@.";
  std::mt19937 rng(11);
  for (const char* p : patterns) {
    SCOPED_TRACE(p);
    const Grammar g = Grammar::parse(std::string("root ::= \"\\\"\" ") + regex_to_gbnf(p) + " \"\\\"\"");
    const std::regex re(p, std::regex::ECMAScript);
    int matched = 0;
    for (int i = 0; i < 3000; ++i) {
      std::string s;
      const int n = static_cast<int>(rng() % 7);
      for (int k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
      const bool want = std::regex_search(s, re);
      matched += want;
      ASSERT_EQ(g.matches(OJson(s).dump()), want) << "'" << s << "'";
    }
    EXPECT_GT(matched, 0);
  }
}

std::string error_of(const std::string& schema) {
  try {
    json_schema_to_gbnf(OJson::parse(schema));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(JsonSchema, UnsupportedFeaturesAreNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type": "object", "properties": {"a": {"not": {"type": "string"}}}})", "unsupported keyword 'not' at /properties/a"},
      {R"({"type": "object", "minProperties": 1})", "unsupported keyword 'minProperties' at the top level"},
      {R"({"type": "array", "prefixItems": []})", "unsupported keyword 'prefixItems'"},
      {R"({"type": "string", "format": "hostname"})", "unsupported format 'hostname'"},
      {R"({"type": "string", "pattern": "(?=a)b"})", "lookaround assertions are not supported"},
      {R"({"type": "string", "pattern": "(a)\\1"})", "backreferences are not supported"},
      {R"({"type": "string", "pattern": "\\bword"})", "word boundaries"},
      {R"({"type": "string", "pattern": "a$b"})", "'$' anchors inside the pattern"},
      {R"({"$ref": "https://example.com/s.json"})", "only references inside the schema"},
      {R"({"$ref": "#/$defs/missing"})", "points at nothing"},
      {R"({"type": "array", "uniqueItems": true})", "unsupported keyword 'uniqueItems'"},
      {R"({"allOf": [{"type": "string"}, {"maxLength": 2}]})", "unsupported keyword 'allOf'"},
      {R"({"type": "integer", "minimum": 5, "maximum": 4})", "no integer lies within the bounds"},
      {R"({"type": "strange"})", "unknown type 'strange'"},
      {"false", "is false"},
  };
  for (const auto& [schema, want] : cases) {
    EXPECT_NE(error_of(schema).find(want), std::string::npos) << schema << "\n got: " << error_of(schema);
  }
}

TEST(StructuredOutput, ResponseFormats) {
  EXPECT_EQ(response_format_gbnf(OJson{{"type", "text"}}), "");
  const Grammar any = Grammar::parse(response_format_gbnf(OJson{{"type", "json_object"}}));
  EXPECT_TRUE(any.matches(R"({"a": [1, 2, {"b": null}]})"));
  EXPECT_FALSE(any.matches("[1]"));
  const OJson rf = OJson::parse(R"({"type": "json_schema", "json_schema": {"name": "x", "strict": true,
      "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}})");
  const Grammar g = Grammar::parse(response_format_gbnf(rf));
  EXPECT_TRUE(g.matches(R"({"n": 3})"));
  EXPECT_FALSE(g.matches(R"({"n": "3"})"));
  EXPECT_THROW(response_format_gbnf(OJson{{"type", "yaml"}}), Error);
}

const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city"]}}},
  {"type": "function", "function": {"name": "ping"}}])";

TEST(StructuredOutput, JsonFormToolCalls) {
  const ToolCallConstraint any = tool_call_constraint(OJson::parse(kTools), "required", false);
  EXPECT_EQ(any.prefix, "<tool_call>\n{\"name\": \"");
  const Grammar g = Grammar::parse(any.gbnf);
  EXPECT_TRUE(g.matches("get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>"));
  EXPECT_TRUE(g.matches("ping\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(g.matches("get_weather\", \"arguments\": {\"days\": 3}}\n</tool_call>"));  // city is required
  EXPECT_FALSE(g.matches("get_weather\", \"arguments\": {\"city\": \"P\", \"days\": 9}}\n</tool_call>"));
  EXPECT_FALSE(g.matches("other\", \"arguments\": {}}\n</tool_call>"));
  const ToolCallConstraint named = tool_call_constraint(OJson::parse(kTools), "get_weather", false);
  EXPECT_EQ(named.prefix, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ");
  const Grammar n = Grammar::parse(named.gbnf);
  EXPECT_TRUE(n.matches("{\"city\": \"Oslo\", \"unit\": \"C\"}}\n</tool_call>"));
  EXPECT_FALSE(n.matches("{\"city\": \"Oslo\", \"unit\": \"K\"}}\n</tool_call>"));
  EXPECT_THROW(tool_call_constraint(OJson::parse(kTools), "missing", false), Error);
}

TEST(StructuredOutput, XmlFormToolCalls) {
  const ToolCallConstraint any = tool_call_constraint(OJson::parse(kTools), "required", true);
  EXPECT_EQ(any.prefix, "<tool_call>\n<function=");
  const Grammar g = Grammar::parse(any.gbnf);
  EXPECT_TRUE(g.matches("get_weather>\n<parameter=city>\nSan Francisco\n</parameter>\n<parameter=days>\n2\n</parameter>\n"
                        "</function>\n</tool_call>"));
  EXPECT_TRUE(g.matches("ping>\n</function>\n</tool_call>"));
  EXPECT_FALSE(g.matches("get_weather>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>"));
  EXPECT_FALSE(g.matches("get_weather>\n<parameter=city>\nX\n</parameter>\n<parameter=unit>\nK\n</parameter>\n"
                         "</function>\n</tool_call>"));
  const ToolCallConstraint named = tool_call_constraint(OJson::parse(kTools), "get_weather", true);
  EXPECT_EQ(named.prefix, "<tool_call>\n<function=get_weather>\n");
}

TEST(StructuredOutput, ThinkDetection) {
  EXPECT_TRUE(ends_inside_think("<|im_start|>assistant\n<think>\n"));
  EXPECT_FALSE(ends_inside_think("<think>\n\n</think>\n\n"));
  EXPECT_FALSE(ends_inside_think("assistant\n"));
}

}  // namespace
}  // namespace tandem::grammar
