// Cross-check driver for the greedy reference (tools/crosscheck/llama_greedy_reference.py):
// runs llama.cpp the way its stock llama-simple does (prompt tokenized with special tokens
// and decoded in one batch, then one token per step, greedy; its texts from the AVX2 build
// equal that build's llama-simple texts for all 5 prompts) and prints one JSON object:
// the prompt's token ids, the tokens taken, their text, and at every step the TOP_K best
// logits. With --force ID,ID,... it takes those tokens instead of its own argmax (teacher
// forcing), so that two configurations can be compared on the same token history.
// Not part of tandem: build it against a llama.cpp built beside the checkout (never inside
// it), e.g.
//   g++ -O2 -std=c++17 tools/crosscheck/llama_greedy.cpp -I$PEER/include -I$PEER/ggml/include \
//       -L$PEER/$BUILD/bin -lllama -lggml -lggml-base -Wl,-rpath,$PEER/$BUILD/bin -o /tmp/llama_greedy
// usage: llama_greedy MODEL N_PREDICT TOP_K FLASH_ATTN(auto|on|off) PROMPT [--force IDS]
// The KV cache keeps llama.cpp's default type (f16).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "llama.h"

namespace {

void print_json_string(const std::string& s) {
  std::putchar('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      std::printf("\\%c", c);
    } else if (c < 0x20) {
      std::printf("\\u%04x", c);
    } else {
      std::putchar(c);
    }
  }
  std::putchar('"');
}

std::vector<llama_token> parse_ids(const char* list) {
  std::vector<llama_token> ids;
  for (const char* p = list; *p;) {
    char* end = nullptr;
    ids.push_back(static_cast<llama_token>(std::strtol(p, &end, 10)));
    if (end == p) break;
    p = *end == ',' ? end + 1 : end;
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6 && argc != 8) {
    std::fprintf(stderr, "usage: llama_greedy MODEL N_PREDICT TOP_K auto|on|off PROMPT [--force IDS]\n");
    return 1;
  }
  const int n_predict = std::atoi(argv[2]);
  const int top_k = std::atoi(argv[3]);
  const std::string flash_attn = argv[4];
  const std::string prompt = argv[5];
  std::vector<llama_token> forced;
  const bool forcing = argc == 8;
  if (forcing) forced = parse_ids(argv[7]);

  llama_backend_init();
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) return 2;
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);

  const int n_prompt = -llama_tokenize(vocab, prompt.c_str(), prompt.size(), nullptr, 0, true, true);
  std::vector<llama_token> tokens(n_prompt);
  if (llama_tokenize(vocab, prompt.c_str(), prompt.size(), tokens.data(), n_prompt, true, true) < 0) return 3;

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = n_prompt + n_predict;  // as llama-simple sizes it (plus one)
  cp.n_batch = n_prompt;
  cp.flash_attn_type = flash_attn == "on"    ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                       : flash_attn == "off" ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                             : LLAMA_FLASH_ATTN_TYPE_AUTO;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return 4;

  std::printf("{\"prompt_tokens\": [");
  for (int i = 0; i < n_prompt; ++i) std::printf("%s%d", i ? ", " : "", tokens[i]);
  std::printf("], \"top\": [");
  llama_batch batch = llama_batch_get_one(tokens.data(), n_prompt);
  std::vector<llama_token> taken;
  std::string text;
  std::vector<int> order(n_vocab);
  for (int step = 0; step < n_predict; ++step) {
    if (llama_decode(ctx, batch)) return 5;
    const float* logits = llama_get_logits_ith(ctx, -1);
    for (int i = 0; i < n_vocab; ++i) order[i] = i;
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int a, int b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    std::printf("%s[", step ? ", " : "");
    for (int i = 0; i < top_k; ++i) std::printf("%s[%d, %.9g]", i ? ", " : "", order[i], logits[order[i]]);
    std::printf("]");
    llama_token next = order[0];
    if (forcing) {
      if (step == static_cast<int>(forced.size())) break;
      next = forced[step];
    } else if (llama_vocab_is_eog(vocab, next)) {
      break;
    }
    taken.push_back(next);
    char piece[256];
    const int n = llama_token_to_piece(vocab, next, piece, sizeof(piece), 0, true);
    if (n < 0) return 6;
    text.append(piece, n);
    batch = llama_batch_get_one(&taken.back(), 1);
  }
  std::printf("], \"tokens\": [");
  for (size_t i = 0; i < taken.size(); ++i) std::printf("%s%d", i ? ", " : "", taken[i]);
  std::printf("], \"text\": ");
  print_json_string(text);
  std::printf("}\n");
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
