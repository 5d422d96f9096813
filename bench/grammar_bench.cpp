// tandem_grammar_bench: how long the grammar constraint takes per token, on a real
// vocabulary, for a nested JSON schema. It tokenizes a JSON document that fits the schema
// and steps a TokenConstraint through it token by token; at every step it times
//   mask   the full allowed-token list (trie walk with the DFA),
//   check  the cheap path: whether the sampler's choice (the document's next token) fits,
//   scan   a full-vocabulary check (every token's bytes walked), the naive method,
//   walk   the same list by the trie walk alone (no mask cache),
// and prints median and p99 of each per pass. Pass 1 starts cold (the walk of pass 1 builds
// DFA states as it goes); later passes reuse the DFA and the masks cached by state, as a long
// generation does.
//   tandem_grammar_bench --vocab MODEL_OR_VOCAB.gguf [--passes 5] [--schema FILE.json]
// The default schema is bench/grammar_order_schema.json (grammar_decode.py uses it too); the
// document below fits it.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "grammar/json_schema.h"
#include "grammar/token_constraint.h"
#include "text/tokenizer.h"

using namespace tandem;
using Clock = std::chrono::steady_clock;

namespace {

const char* kDocument = R"({
  "id": "3f2b8c1e-9a7d-4e6f-b1c2-0d9e8f7a6b5c",
  "customer": {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "address": {"street": "12 Analytical Engine Road", "city": "London", "zip": "10115"}
  },
  "items": [
    {"sku": "BK-101", "qty": 2, "price": 19.95},
    {"sku": "PN-7", "qty": 10, "price": 1.5},
    {"sku": "NB-33", "qty": 1, "price": 4.25}
  ],
  "status": "paid",
  "notes": "Leave the parcel with the neighbour if nobody is home; the bell does not work."
})";

struct Stats {
  std::vector<double> us;
  void add(Clock::duration d) { us.push_back(std::chrono::duration<double, std::micro>(d).count()); }
  double pct(double p) {
    std::sort(us.begin(), us.end());
    return us.empty() ? 0 : us[std::min(us.size() - 1, static_cast<size_t>(p * static_cast<double>(us.size())))];
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Per-token cost of grammar-constrained decoding");
  std::string vocab_path, schema_path = TANDEM_BENCH_DIR "/grammar_order_schema.json";
  int passes = 5;
  bool scan = true;
  app.add_option("--vocab", vocab_path, "GGUF with the tokenizer (a model or a vocab file)")->required();
  app.add_option("--schema", schema_path, "JSON Schema file (default: bench/grammar_order_schema.json, a nested order)");
  app.add_option("--passes", passes, "Passes over the document")->capture_default_str();
  app.add_flag("!--no-scan", scan, "Skip the full-vocabulary scan");
  CLI11_PARSE(app, argc, argv);
  try {
    const text::Tokenizer tok = text::Tokenizer::open(vocab_path);
    std::ifstream in(schema_path);
    if (!in) throw std::runtime_error("cannot read " + schema_path);
    std::stringstream schema_stream;
    schema_stream << in.rdbuf();
    const std::string schema_text = schema_stream.str();
    const auto t0 = Clock::now();
    auto g = grammar::compile(grammar::json_schema_to_gbnf(nlohmann::ordered_json::parse(schema_text)));
    const auto t1 = Clock::now();
    auto trie = grammar::TokenTrie::of(tok);
    const auto t2 = Clock::now();
    const std::vector<text::TokenId> doc = tok.encode(kDocument);
    fmt::print("vocabulary {} tokens, trie {} nodes (built in {:.1f} ms), grammar compiled in {:.2f} ms, document {} tokens\n",
               tok.vocab().size(), trie->node_count(), std::chrono::duration<double, std::milli>(t2 - t1).count(),
               std::chrono::duration<double, std::milli>(t1 - t0).count(), doc.size());
    const std::set<text::TokenId> eog = {tok.vocab().eos};
    grammar::TokenConstraint c(g, tok, eog);  // one constraint: its DFA and masks carry across passes
    std::vector<text::TokenId> walk_out;
    std::vector<grammar::Matcher::State> walk_states;
    for (int pass = 0; pass < passes; ++pass) {
      Stats walk, mask, check, full;
      size_t allowed_sum = 0;
      c.restart();
      for (text::TokenId t : doc) {
        const auto w = Clock::now();
        walk_out.clear();
        trie->allowed(c.matcher(), c.state(), walk_out, walk_states);  // the trie walk alone, never cached
        const auto a = Clock::now();
        const size_t n_allowed = c.allowed().size();
        const auto b = Clock::now();
        const bool ok = c.allows(t);
        const auto d = Clock::now();
        walk.add(a - w);
        mask.add(b - a);
        check.add(d - b);
        allowed_sum += n_allowed;
        if (scan && pass == passes - 1) {
          const auto e = Clock::now();
          size_t n = 0;
          for (size_t id = 0; id < tok.vocab().size(); ++id) n += c.allows(static_cast<text::TokenId>(id));
          full.add(Clock::now() - e);
          if (n != n_allowed) fmt::print(stderr, "mismatch: scan {} vs mask {}\n", n, n_allowed);
        }
        if (!ok || !c.accept(t)) {
          fmt::print(stderr, "the document left the grammar at token {} ({})\n", t, tok.piece(t));
          return 1;
        }
      }
      fmt::print("pass {}: trie walk median {:.1f} us p99 {:.1f} us | mask (cached by state) median {:.1f} us p99 {:.1f} us | "
                 "check median {:.2f} us p99 {:.2f} us | mean allowed {:.0f}",
                 pass + 1, walk.pct(0.5), walk.pct(0.99), mask.pct(0.5), mask.pct(0.99), check.pct(0.5),
                 check.pct(0.99), static_cast<double>(allowed_sum) / static_cast<double>(doc.size()));
      if (!full.us.empty()) fmt::print(" | full scan median {:.1f} us p99 {:.1f} us", full.pct(0.5), full.pct(0.99));
      fmt::print(" | {} DFA states\n", c.matcher().state_count());
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
