// llama.cpp's tokenizer test vectors (../shared/data/vocab/ggml-vocab-*.gguf.inp/.out,
// generated from HF tokenizers): every input must give exactly the listed ids, encoded
// without BOS/EOS and without parse_special (as llama.cpp's test-tokenizer-0 does).
// qwen2/qwen35 have no vocab file there; they run on the Qwen3 tokenizer.json converted
// by tools/tokenizer (same 151k BPE vocabulary; checked below by the vectors themselves).
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "support/test_support.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;
using tandem::text::TokenId;
using tandem::text::Tokenizer;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Inputs are separated by "\n__ggml_vocab_test__\n"; outputs are one line of ids each.
void load_vectors(const fs::path& inp, std::vector<std::string>& inputs,
                  std::vector<std::vector<TokenId>>& outputs) {
  const std::string raw = slurp(inp);
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::ifstream out(fs::path(inp).replace_extension(".out"));
  for (std::string line; std::getline(out, line);) {
    std::istringstream ss(line);
    std::vector<TokenId> ids;
    for (long id; ss >> id;) ids.push_back(static_cast<TokenId>(id));
    outputs.push_back(std::move(ids));
  }
}

std::string show(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

std::string ids_text(const std::vector<TokenId>& ids) {
  std::string s;
  for (TokenId id : ids) s += fmt::format("{} ", id);
  return s;
}

fs::path converted(const std::string& name) {
  return fs::path(TANDEM_TOKENIZER_BUILD_DIR) / name;
}

// Vocabularies whose .inp/.out exist; the GGUF to run each on.
const std::map<std::string, std::string>& runnable() {
  static const std::map<std::string, std::string> m = {
      {"gpt-2", ""}, {"mpt", ""}, {"falcon", ""}, {"starcoder", ""}, {"refact", ""},
      {"deepseek-coder", ""}, {"deepseek-llm", ""}, {"llama-spm", ""}, {"phi-3", ""},
      {"qwen2", "qwen3-vocab.gguf"}, {"qwen35", "qwen3-vocab-qwen35.gguf"}};
  return m;
}

// Vectors that cannot run, and why (reported, and checked to be the only ones).
const std::map<std::string, std::string>& not_run() {
  static const std::map<std::string, std::string> m = {
      {"bert-bge", "WordPiece (tokenizer.ggml.model = bert) is not supported"},
      {"command-r", "no vocab GGUF or tokenizer.json in ../shared"},
      {"gemma-4", "no vocab GGUF or tokenizer.json in ../shared"},
      {"llama-bpe", "no vocab GGUF or tokenizer.json in ../shared (Llama 3 vocabulary)"}};
  return m;
}

class VocabVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectors, MatchExactly) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  const std::string name = GetParam();
  const fs::path dir = shared / "data" / "vocab";
  const fs::path inp = dir / ("ggml-vocab-" + name + ".gguf.inp");
  ASSERT_TRUE(fs::exists(inp)) << inp;
  const std::string& alt = runnable().at(name);
  const fs::path vocab = alt.empty() ? dir / ("ggml-vocab-" + name + ".gguf") : converted(alt);
  ASSERT_TRUE(fs::exists(vocab)) << vocab << " (converted vocabularies come from the tokenizer_convert test)";

  const Tokenizer tok = Tokenizer::open(vocab);
  std::vector<std::string> inputs;
  std::vector<std::vector<TokenId>> expected;
  load_vectors(inp, inputs, expected);
  ASSERT_EQ(inputs.size(), expected.size()) << "input/output count differs in " << inp;
  ASSERT_GT(inputs.size(), 10u);
  size_t failures = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<TokenId> got = tok.encode(inputs[i], {false, false});
    if (got != expected[i]) {
      ++failures;
      ADD_FAILURE() << name << " vector " << i << " '" << show(inputs[i]) << "'\n  expected: "
                    << ids_text(expected[i]) << "\n  got:      " << ids_text(got);
    }
  }
  EXPECT_EQ(failures, 0u) << failures << " of " << inputs.size() << " vectors differ";
}

INSTANTIATE_TEST_SUITE_P(All, VocabVectors,
                         ::testing::Values("gpt-2", "mpt", "falcon", "starcoder", "refact",
                                           "deepseek-coder", "deepseek-llm", "llama-spm", "phi-3",
                                           "qwen2", "qwen35"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

// Every vector file in ../shared is either run above or listed with its reason; a new
// file shows up here instead of being silently ignored.
TEST(VocabVectors, EveryFileAccountedFor) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  for (const auto& entry : fs::directory_iterator(shared / "data" / "vocab")) {
    const std::string file = entry.path().filename().string();
    const std::string prefix = "ggml-vocab-", suffix = ".gguf.inp";
    if (file.size() <= prefix.size() + suffix.size() || !file.ends_with(suffix)) continue;
    const std::string name = file.substr(prefix.size(), file.size() - prefix.size() - suffix.size());
    if (runnable().count(name)) continue;
    ASSERT_TRUE(not_run().count(name)) << "vector file " << file << " is neither run nor explained";
    std::cout << "[ NOT RUN  ] " << name << ": " << not_run().at(name) << "\n";
  }
}

// Vocabularies we do not support fail with an error naming what is unsupported.
TEST(VocabVectors, UnsupportedModelIsAClearError) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  try {
    Tokenizer::open(shared / "data" / "vocab" / "ggml-vocab-bert-bge.gguf");
    FAIL() << "bert vocab loaded";
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'bert' is not supported"), std::string::npos) << e.what();
  }
}

}  // namespace
