// Tokenizer throughput: encodes every line of a corpus (one thread) for several rounds and
// prints the best round as JSON. bench/tokenizer_bench.py runs it beside HF tokenizers.
//   tokenizer_bench VOCAB.gguf CORPUS.txt [ROUNDS]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "text/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    fmt::print(stderr, "usage: {} VOCAB.gguf CORPUS.txt [ROUNDS]\n", argv[0]);
    return 2;
  }
  try {
    const auto tokenizer = tandem::text::Tokenizer::open(argv[1]);
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) tandem::fail("{}: cannot open", argv[2]);
    std::vector<std::string> lines;
    size_t bytes = 0;
    for (std::string line; std::getline(in, line);) {
      bytes += line.size();
      lines.push_back(std::move(line));
    }
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
    double best = 1e300;
    size_t tokens = 0;
    std::vector<tandem::text::TokenId> ids;
    for (int r = 0; r < rounds; ++r) {
      tokens = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (const std::string& line : lines) {
        ids.clear();
        tokenizer.encode(line, {}, ids);
        tokens += ids.size();
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, s);
    }
    fmt::print("{{\"lines\": {}, \"bytes\": {}, \"tokens\": {}, \"seconds\": {:.6f}, \"tokens_per_s\": {:.1f}}}\n",
               lines.size(), bytes, tokens, best, tokens / best);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
