// GBNF conformance: for each construct, strings the grammar must accept and reject; parse
// errors with line and column; grammars that can never complete or would loop.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "grammar/grammar.h"
#include "grammar/matcher.h"

namespace tandem::grammar {
namespace {

struct Case {
  const char* name;
  const char* gbnf;
  std::vector<std::string> accept, reject;
};

const Case kCases[] = {
    {"literal", R"(root ::= "abc")", {"abc"}, {"", "ab", "abcd", "abd", "ABC"}},
    {"sequence_of_refs", "root ::= a b\na ::= \"x\"\nb ::= \"y\"", {"xy"}, {"x", "yx", "xyy"}},
    {"alternation", R"(root ::= "cat" | "dog" | "")", {"cat", "dog", ""}, {"ca", "cow", "catdog"}},
    {"grouping", R"(root ::= ("a" | "b") "c")", {"ac", "bc"}, {"c", "abc", "a"}},
    {"star", R"(root ::= "a"*)", {"", "a", "aaaaaaaa"}, {"b", "ab"}},
    {"plus", R"(root ::= "ab"+)", {"ab", "abab"}, {"", "a", "aba"}},
    {"optional", R"(root ::= "x" "y"? "z")", {"xz", "xyz"}, {"xyyz", "x", "yz"}},
    {"repeat_exact", R"(root ::= [0-9]{3})", {"123", "000"}, {"12", "1234", "12a"}},
    {"repeat_range", R"(root ::= "a"{2,4})", {"aa", "aaa", "aaaa"}, {"a", "aaaaa", ""}},
    {"repeat_at_least", R"(root ::= "a"{2,})", {"aa", "aaaaaaa"}, {"a", ""}},
    {"repeat_up_to", R"(root ::= "a"{0,2} "b")", {"b", "ab", "aab"}, {"aaab"}},
    {"repeat_group", R"(root ::= ("ab" | "c"){1,2})", {"ab", "c", "abc", "cab", "cc"}, {"", "abcab", "a"}},
    {"class_range", R"(root ::= [a-cx]+)", {"abcx", "x"}, {"d", "", "abd"}},
    {"class_negated", R"(root ::= [^a-z]+)", {"ABC", "123", "é", "日本"}, {"a", "Az", ""}},
    {"class_negated_utf8_only_valid", R"(root ::= [^"]*)", {"", "x", "\xc3\xa9", "\xf0\x9f\x98\x80"},
     {"\"", "\xc3", "\xff", "\xed\xa0\x80" /* a surrogate */, "\xc0\xaf" /* overlong */}},
    {"class_unicode_range", R"(root ::= [α-ω]+)", {"αβω"}, {"a", "Α"}},
    {"class_escapes", R"(root ::= [\]\-\\\n]+)", {"]", "-", "\\", "\n", "]-\\\n"}, {"a", "["}},
    {"escapes_in_literal", R"(root ::= "\x41\u00e9\U0001F600\t\"\\")", {"A\xc3\xa9\xf0\x9f\x98\x80\t\"\\"}, {"A"}},
    {"dot", R"(root ::= "<" . ">")", {"<a>", "<é>", "<>>"}, {"<\n>", "<>", "<ab>"}},
    {"comments_and_newlines",
     "# a comment\nroot ::= item (\",\" item)*  # trailing\n\nitem ::= [0-9]+ # digits\n",
     {"1", "1,22,333"},
     {"", "1,", ",1"}},
    {"alternatives_on_new_lines", "root ::= \"a\"\n  | \"b\"\n  | \"c\"", {"a", "b", "c"}, {"d"}},
    {"nested_parens_across_lines", "root ::= (\n  \"a\" |\n  \"b\"\n) \"!\"", {"a!", "b!"}, {"a", "!"}},
    {"recursion", "root ::= \"(\" root \")\" | \"\"", {"", "()", "((()))"}, {"(", "())", ")("}},
    {"right_recursion_list", "root ::= [0-9] (\",\" root)?", {"1", "1,2,3"}, {"1,", ",1"}},
    {"empty_alternative_first", R"(root ::= | "x")", {"", "x"}, {"xx"}},
    {"ambiguous", R"(root ::= ("a" | "ab") "b"?)", {"a", "ab", "abb"}, {"abbb", "b"}},
    {"unproductive_alternative_dropped", "root ::= \"a\" | \"b\" x\nx ::= \"c\" x", {"a"}, {"b", "bc", "bccc"}},
    {"json_like",
     R"(root ::= obj
obj ::= "{" ws (pair ("," ws pair)*)? "}"
pair ::= str ws ":" ws val ws
val ::= str | [0-9]+ | obj
str ::= "\"" [^"]* "\""
ws ::= [ ]?)",
     {"{}", "{\"a\": 1}", "{\"a\":{\"b\":\"c\"}, \"d\": 22}"},
     {"{", "{\"a\"}", "{\"a\": }", "{\"a\": 1,}"}},
};

TEST(Gbnf, ConformanceCases) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const Grammar g = Grammar::parse(c.gbnf);
    for (const std::string& s : c.accept) EXPECT_TRUE(g.matches(s)) << "should accept '" << s << "'";
    for (const std::string& s : c.reject) EXPECT_FALSE(g.matches(s)) << "should reject '" << s << "'";
  }
}

// Prefixes of accepted strings stay alive (never dead) and reach the accepting state only at the end.
TEST(Gbnf, PrefixesOfAcceptedStringsAreLive) {
  auto g = std::make_shared<const Grammar>(Grammar::parse(R"(root ::= "ab" [0-9]{2,3} ("x" | "yz"))"));
  Matcher m(g);
  const std::string s = "ab123yz";
  Matcher::State st = m.start();
  for (size_t i = 0; i < s.size(); ++i) {
    EXPECT_FALSE(m.accepting(st)) << i;
    st = m.step(st, static_cast<uint8_t>(s[i]));
    ASSERT_NE(st, Matcher::kDead) << i;
  }
  EXPECT_TRUE(m.accepting(st));
  EXPECT_FALSE(m.can_continue(st));
}

// The star loop does not grow the parser's stacks: the DFA stays small over long inputs.
TEST(Gbnf, RepetitionRunsInBoundedStates) {
  auto g = std::make_shared<const Grammar>(Grammar::parse(R"(root ::= ("[" [a-z]* "]")*)"));
  Matcher m(g);
  Matcher::State st = m.start();
  for (int i = 0; i < 2000; ++i) st = m.walk(st, "[abc]");
  EXPECT_TRUE(m.accepting(st));
  EXPECT_LT(m.state_count(), 10u);
}

std::string error_of(const std::string& gbnf) {
  try {
    Grammar::parse(gbnf);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Gbnf, ParseErrorsNameLineAndColumn) {
  const std::pair<const char*, const char*> cases[] = {
      {"root ::= \"abc", "line 1, column 14: unterminated string literal"},
      {"root ::= [a-z", "line 1, column 10: unterminated character class"},
      {"root ::= a\na ::= \"x\" )", "line 2, column 11: unexpected ')'"},
      {"root := \"a\"", "line 1, column 6: expected '::=' after rule name 'root'"},
      {"root ::= (\"a\"", "line 1, column 14: expected ')'"},
      {"root ::= \"a\"\n\nroot ::= \"b\"", "line 3, column 1: rule 'root' is defined twice"},
      {"root ::= * \"a\"", "line 1, column 10: '*' has nothing to repeat"},
      {"root ::= \"a\"{3,1}", "line 1, column 18: repetition {3,1} has max below min"},
      {"root ::= \"\\q\"", "line 1, column 11: unknown escape '\\q'"},
      {"root ::= \"\\xZZ\"", "line 1, column 11: escape needs 2 hex digits"},
      {"root ::= [z-a]", "line 1, column 10: range U+7A-U+61 is reversed"},
      {"root ::= item\nother ::= \"x\"\n", "line 1, column 10: rule 'item' is used but never defined"},
      {"root ::= \"a\" |\n   b\n", "line 2, column 4: rule 'b' is used but never defined"},
  };
  for (const auto& [gbnf, want] : cases) {
    EXPECT_NE(error_of(gbnf).find(want), std::string::npos) << gbnf << "\n got: " << error_of(gbnf);
  }
}

TEST(Gbnf, NoStartRule) { EXPECT_NE(error_of("a ::= \"x\"").find("there is no start rule 'root'"), std::string::npos); }

TEST(Gbnf, NeverCompletingGrammarsAreRejected) {
  const char* cases[] = {
      "root ::= \"a\" root",                          // no way out of the recursion
      "root ::= x\nx ::= \"(\" x \")\"",              // only infinite nesting
      "root ::= \"a\" [^\\x00-\\U0010FFFF]",          // a class nothing matches
      "root ::= a b\na ::= \"x\"\nb ::= \"y\" b | b \"z\"",  // b never finishes (and is left-recursive)
  };
  for (const char* g : cases) {
    const std::string e = error_of(g);
    EXPECT_TRUE(e.find("can never complete") != std::string::npos || e.find("left-recursive") != std::string::npos)
        << g << "\n got: " << e;
  }
  EXPECT_NE(error_of("root ::= \"a\" root").find("it can never complete: rule 'root'"), std::string::npos);
}

TEST(Gbnf, LeftRecursionIsRejected) {
  EXPECT_NE(error_of("root ::= root \"a\" | \"b\"").find("rule 'root' is left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= x \"a\" | \"b\"\nx ::= y\ny ::= \"\" | root").find("left-recursive"), std::string::npos);
  // A repetition of something that can be empty would loop without consuming input.
  EXPECT_NE(error_of("root ::= (\"a\"?)*").find("left-recursive"), std::string::npos);
}

// Found by grammar_fuzz: a rule nested in its own bounded repetition can be parsed in a
// number of ways that grows with every byte. The matcher must stop with an error naming
// the cause, quickly, instead of building ever larger configurations.
TEST(Gbnf, AmbiguityPastTheBoundIsAnErrorNotAHang) {
  Matcher m(compile(R"(root ::= ("a" | [^?] root + | "0e9"){1,9})"));
  std::string input;
  for (int i = 0; i < 128; ++i) input += "ba";  // each "a" may close any of the open roots
  try {
    m.walk(m.start(), input);
    FAIL() << "no error after " << input.size() << " bytes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("grammar: too ambiguous to match"), std::string::npos) << e.what();
  }
  // Chains of rules that match nothing in two ways: 2^40 expansions for one byte.
  std::string chain = "root ::= e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e \"x\"\n"
                      "e ::= f | g\nf ::= \"\"\ng ::= \"\"";
  try {
    Matcher c(compile(chain));
    EXPECT_TRUE(c.accepting(c.walk(c.start(), "x")));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("grammar: too ambiguous to match"), std::string::npos) << e.what();
  }
  // A plainly ambiguous but real grammar stays well inside the bounds.
  Matcher ok(compile(R"(root ::= ("a" | "ab") "b"?)"));
  EXPECT_TRUE(ok.accepting(ok.walk(ok.start(), "abb")));
}

TEST(Gbnf, LeadingSpaceWrapperKeepsTheUsersLines) {
  auto g = compile("root ::= \"{\" \"}\"", true);
  EXPECT_TRUE(g->matches("{}"));
  EXPECT_TRUE(g->matches("\n\n{}"));
  EXPECT_FALSE(g->matches("\n\n\n\n\n{}"));
  try {
    compile("root ::= \"a\"\nx ::= \"b", true);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem::grammar
