// A context-free grammar over bytes, compiled from GBNF as llama.cpp spells it:
//
//   root  ::= "{" ws pair ("," ws pair)* "}"     # rules, literals, grouping, alternation
//   pair  ::= [a-z]+ ":" [0-9]{1,3}              # classes (ranges, ^), * + ? {m} {m,} {m,n}
//   ws    ::= [ \t\n]?                           # escapes \n \t \r \\ \" \xHH \uHHHH \UHHHHHHHH
//
// Classes and literals are code points; the compiler turns each into UTF-8 byte sequences
// (a negated class admits only well-formed UTF-8), so the matcher and the token trie work
// on bytes alone and a token that splits a character needs no special state. Repetitions
// become right-recursive helper rules (X* is R ::= X R | empty), which the matcher runs
// without growing its stack.
//
// Checked before any decoding: syntax (errors give line:column), rules used but never
// defined, left recursion (the matcher would expand forever), and rules that can never
// finish; alternatives that reach such a rule are dropped, and a start rule with none left
// is "a grammar that can never complete".
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::grammar {

// One step of an alternative: a byte from a set, a reference to a rule, or the end.
struct Element {
  enum class Kind : uint8_t { End, Bytes, Ref };
  Kind kind = Kind::End;
  uint32_t value = 0;  // Bytes: index into Grammar::byte_sets; Ref: rule index
};

using ByteSet = std::array<uint64_t, 4>;  // bit b set: byte b allowed
inline bool contains(const ByteSet& s, uint8_t b) { return (s[b >> 6] >> (b & 63)) & 1u; }

struct Grammar {
  std::vector<Element> code;                  // every alternative, each ended by an End
  std::vector<std::vector<uint32_t>> alts;    // per rule: where its alternatives start in `code`
  std::vector<std::string> names;             // per rule (helpers: "<rule>#<n>")
  std::vector<ByteSet> byte_sets;
  uint32_t start = 0;

  // Compiles GBNF text; `start` names the start rule. Throws tandem::Error with line:column.
  static Grammar parse(std::string_view text, std::string_view start = "root");
  // Whether `text` as a whole is a sentence of the grammar (tests, small inputs).
  bool matches(std::string_view text) const;
};

// The UTF-8 bytes of one code point.
std::string utf8_encode(uint32_t code_point);

// Compiles GBNF text (start rule "root"). With `leading_space`, up to four spaces or
// newlines may come first (the blank line a reasoning model writes after </think>).
std::shared_ptr<const Grammar> compile(std::string_view gbnf, bool leading_space = false);

}  // namespace tandem::grammar
