// JSON Schema -> GBNF, so a constrained model writes only JSON the schema accepts.
//
// Supported: type (string or list), properties / required (in the schema's order; optional
// ones may be left out), additionalProperties (absent or false: none; true or a schema:
// extra keys, which never repeat a declared key), enum, const, items / minItems /
// maxItems, minLength / maxLength, format (date, time, date-time, uuid, email, ipv4),
// pattern (a regular-expression subset: literals, classes, ., \d \w \s, groups,
// alternation, * + ? {m,n}; anchors only at the ends; unanchored patterns may have any text
// around the match), $ref to #/$defs/... or #/definitions/... (recursion included),
// anyOf / oneOf (as alternatives: oneOf's "exactly one" is not enforced), allOf of one
// schema, minimum / maximum / exclusiveMinimum / exclusiveMaximum.
//
// Numbers: integers are exact over their range (integers without bounds have at most 16
// digits). A bounded "number" is written as an integer or a decimal fraction (no exponent)
// whose integer part keeps every value in range; a non-integer bound is rounded inwards,
// so some valid values (e.g. 0.3 with minimum 0.25) are never produced, and no invalid one is.
//
// Whitespace: between tokens, nothing, one space, or a newline and up to 40 spaces/tabs, so
// a model can pretty-print but never loop on whitespace.
//
// Anything else (a keyword it does not know, a format or regex feature it cannot express)
// is a tandem::Error naming the keyword and where it is ("unsupported JSON Schema keyword
// 'not' at /properties/a").
#pragma once

#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace tandem::grammar {

class SchemaCompiler {
 public:
  using Json = nlohmann::ordered_json;

  // A rule for values of `schema`; `document` is what "#/..." references resolve against.
  // Returns the rule's name.
  std::string add(const Json& schema, const Json& document, const std::string& name_hint);
  // A rule for any JSON value / any JSON object.
  std::string any_value();
  std::string any_object();
  // Adds `name ::= body` (name made unique) and returns the name.
  std::string rule(const std::string& name_hint, const std::string& body);
  // The whitespace rule's name.
  std::string ws();
  // All rules, `root ::= root_body` first.
  std::string gbnf(const std::string& root_body) const;
  // A shared rule by name: ws, string, integer, number, boolean, null, value, and the
  // string formats (date, time, date-time, uuid, email, ipv4: the text without quotes).
  std::string primitive(const std::string& which);

 private:
  std::string visit(const Json& s, const std::string& name, const std::string& path);
  std::string object_rule(const Json& s, const std::string& name, const std::string& path);
  std::string array_rule(const Json& s, const std::string& name, const std::string& path);
  std::string string_rule(const Json& s, const std::string& name, const std::string& path);
  std::string integer_rule(const Json& s, const std::string& path);
  std::string number_rule(const Json& s, const std::string& path);
  std::string key_not_in(const std::vector<std::string>& keys, const std::string& name);

  std::vector<std::pair<std::string, std::string>> rules_;
  std::set<std::string> names_;
  std::map<std::string, std::string> primitives_;
  std::map<std::string, std::string> refs_;  // "#/$defs/x" -> rule
  const Json* document_ = nullptr;
  int depth_ = 0;
};

// The GBNF text for `schema` (root rule "root").
std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema);
// A GBNF literal ("...") for raw bytes.
std::string gbnf_literal(std::string_view bytes);
// A regular expression (the JSON Schema `pattern` subset above) as a GBNF expression for
// the characters of a JSON string that match it. Throws naming an unsupported feature.
std::string regex_to_gbnf(std::string_view pattern);

}  // namespace tandem::grammar
