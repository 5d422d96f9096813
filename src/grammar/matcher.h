// Runs a Grammar over bytes as a pushdown automaton whose configurations are cached as
// states of a lazily built DFA.
//
// A parse position is a stack of grammar positions (the top is the byte set to match next,
// below it where each enclosing rule continues). Stacks are interned as (top, rest) nodes,
// so equal stacks are one id, and a configuration is the sorted set of stack ids the input
// so far allows (several when the grammar is ambiguous). Each distinct configuration gets a
// State number and a 256-entry transition row filled on first use: after a few tokens
// stepping a byte is one array load, which is what lets the token trie walk follow only the
// tokens that can match at a few nanoseconds per trie node.
//
// Rule references at the end of an alternative do not push a return position (a tail
// call), so X* (R ::= X R | empty) runs in constant stack depth.
//
// A grammar can be ambiguous enough that the number of live stacks grows without bound
// with the input (a rule nested inside its own repetition, say); the work is bounded
// (kMaxStacks, kMaxExpandSteps, kMaxNodes) and going past a bound is a tandem::Error that
// names it, never a hang.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "grammar/grammar.h"

namespace tandem::grammar {

class Matcher {
 public:
  using State = int32_t;
  static constexpr State kDead = -1;

  explicit Matcher(std::shared_ptr<const Grammar> grammar);

  State start() const { return start_; }
  // The state after `byte`, or kDead if the grammar does not allow it there.
  State step(State s, uint8_t byte) {
    const int32_t t = transitions_[static_cast<size_t>(s) * 256 + byte];
    return t != kUnknown ? t : compute(s, byte);
  }
  State walk(State s, std::string_view bytes) {
    for (char c : bytes) {
      if (s == kDead) break;
      s = step(s, static_cast<uint8_t>(c));
    }
    return s;
  }
  // Whether the input so far is a complete sentence.
  bool accepting(State s) const { return s != kDead && accepting_[static_cast<size_t>(s)]; }
  // Whether any byte can follow (the empty stack sorts last).
  bool can_continue(State s) const { return s != kDead && stacks_of(s).front() != 0; }

  // Whether every printable ASCII byte but '"' and '\\' leads from `s` back to `s` (the
  // inside of an unbounded string): then any token of such bytes is allowed and ends in `s`.
  bool loops_on_plain(State s) {
    const int8_t known = plain_loop_[static_cast<size_t>(s)];
    return known >= 0 ? known != 0 : compute_plain_loop(s);
  }
  static bool plain_byte(uint8_t b) { return b >= 0x20 && b < 0x7F && b != '"' && b != '\\'; }
  // loops_on_plain, and every well-formed non-ASCII UTF-8 character also leads from `s`
  // back to `s` with no prefix of it rejected: any token that is a well-formed UTF-8 prefix
  // of such characters is allowed from `s`.
  bool loops_on_text(State s) {
    const int8_t known = text_loop_[static_cast<size_t>(s)];
    return known >= 0 ? known != 0 : compute_text_loop(s);
  }
  // One step of a UTF-8 checker over "plain" text (plain_byte or well-formed non-ASCII):
  // 0 at a character boundary, 1..7 inside a character, -1 not such text.
  static int text_step(int state, uint8_t b);

  size_t state_count() const { return accepting_.size(); }
  // Drops the cached DFA when it has grown past `max_states`, keeping `keep` (renumbered).
  void trim_cache(State& keep, size_t max_states);
  const Grammar& grammar() const { return *grammar_; }

 private:
  static constexpr int32_t kUnknown = -2;
  // Real grammars (JSON Schema, GBNF files people write) keep well under a hundred stacks
  // per configuration and a few thousand nodes; these bounds are far above that.
  static constexpr size_t kMaxStacks = 4096;           // per configuration
  static constexpr size_t kMaxExpandSteps = 1u << 20;  // per computed transition
  static constexpr size_t kMaxNodes = 1u << 22;        // per matcher (about 150 MiB)
  struct Node {
    uint32_t pos;    // index into code: a Bytes element
    int32_t parent;  // the stack below (0: the empty stack)
  };
  std::span<const int32_t> stacks_of(State s) const {
    return {members_.data() + member_begin_[static_cast<size_t>(s)],
            member_begin_[static_cast<size_t>(s) + 1] - member_begin_[static_cast<size_t>(s)]};
  }
  int32_t node(uint32_t pos, int32_t parent);
  void expand(uint32_t pos, int32_t parent, std::vector<int32_t>& out);
  State intern(std::vector<int32_t>& stacks);  // sorts and dedups `stacks`
  State compute(State s, uint8_t byte);
  bool compute_plain_loop(State s);
  bool compute_text_loop(State s);

  std::shared_ptr<const Grammar> grammar_;
  const Element* code_;
  std::vector<Node> nodes_;                           // [0]: the empty stack
  std::unordered_map<uint64_t, int32_t> node_ids_;    // (pos, parent) -> node
  std::vector<int32_t> members_;                      // each state's sorted stack ids, back to back
  std::vector<uint32_t> member_begin_;                // per state + 1
  std::vector<uint8_t> accepting_;
  std::vector<int8_t> plain_loop_;                    // per state: -1 not yet known
  std::vector<int8_t> text_loop_;
  std::vector<int32_t> transitions_;                  // state * 256 + byte
  std::unordered_multimap<uint64_t, State> state_ids_;  // hash of members -> state
  std::vector<int32_t> scratch_;
  size_t expand_steps_ = 0;  // since the current transition began
  State start_ = kDead;
};

}  // namespace tandem::grammar
