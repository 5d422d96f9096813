#include "grammar/matcher.h"

#include <algorithm>

#include "core/error.h"

namespace tandem::grammar {

Matcher::Matcher(std::shared_ptr<const Grammar> grammar) : grammar_(std::move(grammar)), code_(grammar_->code.data()) {
  nodes_.push_back({0, -1});
  member_begin_.push_back(0);
  scratch_.clear();
  expand_steps_ = 0;
  for (uint32_t alt : grammar_->alts[grammar_->start]) expand(alt, 0, scratch_);
  start_ = intern(scratch_);
}

int32_t Matcher::node(uint32_t pos, int32_t parent) {
  const uint64_t key = (uint64_t{pos} << 32) | static_cast<uint32_t>(parent);
  auto [it, fresh] = node_ids_.try_emplace(key, static_cast<int32_t>(nodes_.size()));
  if (fresh) {
    if (nodes_.size() >= kMaxNodes) {
      node_ids_.erase(it);
      fail("grammar: too ambiguous to match: more than {} distinct parse stacks were needed", kMaxNodes);
    }
    nodes_.push_back({pos, parent});
  }
  return it->second;
}

// Adds to `out` every stack that continues from `pos` with `parent` below and has a byte
// set on top (or is empty: the sentence may end here).
void Matcher::expand(uint32_t pos, int32_t parent, std::vector<int32_t>& out) {
  while (true) {
    if (++expand_steps_ > kMaxExpandSteps) {
      fail("grammar: too ambiguous to match: one byte needed more than {} rule expansions (rules that can "
           "match nothing, nested in each other?)",
           kMaxExpandSteps);
    }
    const Element& e = code_[pos];
    if (e.kind == Element::Kind::Bytes) {
      out.push_back(node(pos, parent));
      return;
    }
    if (e.kind == Element::Kind::Ref) {
      // Where to go after the rule: nowhere new if the alternative ends here (tail call).
      const int32_t after = code_[pos + 1].kind == Element::Kind::End ? parent : node(pos + 1, parent);
      const std::vector<uint32_t>& alts = grammar_->alts[e.value];
      for (size_t i = 0; i + 1 < alts.size(); ++i) expand(alts[i], after, out);
      if (alts.empty()) return;
      pos = alts.back();
      parent = after;
      continue;
    }
    // End of an alternative: return to the position below.
    if (parent == 0) {
      out.push_back(0);
      return;
    }
    const Node& n = nodes_[static_cast<size_t>(parent)];
    pos = n.pos;
    parent = n.parent;
    // n.pos may itself be a Bytes element (the usual case): then the stack is `n` again.
  }
}

Matcher::State Matcher::intern(std::vector<int32_t>& stacks) {
  std::sort(stacks.begin(), stacks.end(), std::greater<>());  // the empty stack (0) last
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  if (stacks.empty()) return kDead;
  if (stacks.size() > kMaxStacks) {
    fail("grammar: too ambiguous to match: the text so far can be parsed in more than {} ways at once (a rule "
         "that nests inside its own repetition?)",
         kMaxStacks);
  }
  uint64_t h = 1469598103934665603ull;
  for (int32_t id : stacks) h = (h ^ static_cast<uint32_t>(id)) * 1099511628211ull;
  auto range = state_ids_.equal_range(h);
  for (auto it = range.first; it != range.second; ++it) {
    const auto members = stacks_of(it->second);
    if (std::equal(members.begin(), members.end(), stacks.begin(), stacks.end())) return it->second;
  }
  const auto id = static_cast<State>(accepting_.size());
  members_.insert(members_.end(), stacks.begin(), stacks.end());
  member_begin_.push_back(static_cast<uint32_t>(members_.size()));
  accepting_.push_back(stacks.back() == 0);
  plain_loop_.push_back(-1);
  text_loop_.push_back(-1);
  transitions_.resize(transitions_.size() + 256, kUnknown);
  state_ids_.emplace(h, id);
  return id;
}

Matcher::State Matcher::compute(State s, uint8_t byte) {
  std::vector<int32_t> next;
  next.swap(scratch_);  // expand() may be re-entered only through here; keep the buffer
  next.clear();
  expand_steps_ = 0;
  const auto begin = member_begin_[static_cast<size_t>(s)], end = member_begin_[static_cast<size_t>(s) + 1];
  for (uint32_t i = begin; i < end; ++i) {
    const int32_t id = members_[i];
    if (id == 0) continue;
    const Node n = nodes_[static_cast<size_t>(id)];
    if (contains(grammar_->byte_sets[code_[n.pos].value], byte)) expand(n.pos + 1, n.parent, next);
  }
  const State t = intern(next);
  next.swap(scratch_);
  transitions_[static_cast<size_t>(s) * 256 + byte] = t;
  return t;
}

bool Matcher::compute_plain_loop(State s) {
  bool loops = true;
  for (unsigned b = 0; b < 256 && loops; ++b) {
    if (plain_byte(static_cast<uint8_t>(b))) loops = step(s, static_cast<uint8_t>(b)) == s;
  }
  plain_loop_[static_cast<size_t>(s)] = loops ? 1 : 0;
  return loops;
}

int Matcher::text_step(int state, uint8_t b) {
  // Well-formed UTF-8 (Unicode table 3-7): the lead byte fixes how many continuation bytes
  // follow and the range of the first one.
  const bool cont = b >= 0x80 && b <= 0xBF;
  switch (state) {
    case 0:
      if (plain_byte(b)) return 0;
      if (b >= 0xC2 && b <= 0xDF) return 1;
      if (b == 0xE0) return 4;
      if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return 2;
      if (b == 0xED) return 5;
      if (b == 0xF0) return 6;
      if (b >= 0xF1 && b <= 0xF3) return 3;
      if (b == 0xF4) return 7;
      return -1;
    case 1: return cont ? 0 : -1;
    case 2: return cont ? 1 : -1;
    case 3: return cont ? 2 : -1;
    case 4: return b >= 0xA0 && b <= 0xBF ? 1 : -1;
    case 5: return b >= 0x80 && b <= 0x9F ? 1 : -1;
    case 6: return b >= 0x90 && b <= 0xBF ? 2 : -1;
    case 7: return b >= 0x80 && b <= 0x8F ? 2 : -1;
  }
  return -1;
}

bool Matcher::compute_text_loop(State s) {
  bool loops = loops_on_plain(s);
  // Walk the checker and the DFA together from (boundary, s) over every non-plain byte the
  // checker allows; every pair reached must be live, and a boundary must be s again.
  std::vector<std::pair<int, State>> todo, seen;
  if (loops) todo.emplace_back(0, s);
  while (loops && !todo.empty()) {
    const auto [c, st] = todo.back();
    todo.pop_back();
    for (unsigned b = 0x80; b < 256 && loops; ++b) {
      const int c2 = text_step(c, static_cast<uint8_t>(b));
      if (c2 < 0) continue;
      const State t = step(st, static_cast<uint8_t>(b));
      if (t == kDead || (c2 == 0 && t != s)) {
        loops = false;
      } else if (c2 != 0 && std::find(seen.begin(), seen.end(), std::make_pair(c2, t)) == seen.end()) {
        seen.emplace_back(c2, t);
        todo.emplace_back(c2, t);
      }
    }
  }
  text_loop_[static_cast<size_t>(s)] = loops ? 1 : 0;
  return loops;
}

void Matcher::trim_cache(State& keep, size_t max_states) {
  if (state_count() <= max_states || keep == kDead) return;
  std::vector<int32_t> stacks(stacks_of(keep).begin(), stacks_of(keep).end());
  std::vector<int32_t> start_stacks(stacks_of(start_).begin(), stacks_of(start_).end());
  members_.clear();
  member_begin_.assign(1, 0);
  accepting_.clear();
  plain_loop_.clear();
  text_loop_.clear();
  transitions_.clear();
  state_ids_.clear();
  start_ = intern(start_stacks);
  keep = intern(stacks);
}

bool Grammar::matches(std::string_view text) const {
  Matcher m(std::make_shared<const Grammar>(*this));
  return m.accepting(m.walk(m.start(), text));
}

}  // namespace tandem::grammar
