// Cross-check driver: runs llama.cpp on token ids, writes the logits of every position
// (f32, [n][vocab]) to a file and prints N greedy tokens. Not part of tandem: build it
// against a llama.cpp built beside the checkout (never inside it), e.g.
//   g++ -O2 -std=c++17 tools/crosscheck/llama_logits.cpp -I$PEER/include -I$PEER/ggml/include \
//       -L$PEER/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$PEER/build/bin -o /tmp/llama_logits
// usage: llama_logits [-ctk TYPE] [-ctv TYPE] MODEL OUT.f32 N_GREEDY TOKEN_ID...
// The KV cache is f32 (llama.cpp's default is f16) so that only the matmul numerics differ,
// unless -ctk/-ctv name another cache type as llama.cpp's tools spell it (f16, bf16, q8_0,
// q4_0, q4_1, q5_0, q5_1: any ggml type name), for tandem's quantized caches to be compared.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "llama.h"
// A ggml type by its name ("q8_0"), or GGML_TYPE_COUNT.
static ggml_type type_named(const char* name) {
  for (int t = 0; t < GGML_TYPE_COUNT; ++t) {
    const char* n = ggml_type_name(static_cast<ggml_type>(t));
    if (n && strcmp(n, name) == 0) return static_cast<ggml_type>(t);
  }
  return GGML_TYPE_COUNT;
}
int main(int argc, char** argv) {
  // f32 KV cache by default: the comparison should see llama.cpp's matmul numerics, not f16 cache rounding.
  ggml_type type_k = GGML_TYPE_F32, type_v = GGML_TYPE_F32;
  while (argc > 2 && (strcmp(argv[1], "-ctk") == 0 || strcmp(argv[1], "-ctv") == 0)) {
    const ggml_type t = type_named(argv[2]);
    if (t == GGML_TYPE_COUNT) { fprintf(stderr, "%s: unknown type %s\n", argv[1], argv[2]); return 1; }
    (strcmp(argv[1], "-ctk") == 0 ? type_k : type_v) = t;
    argc -= 2;
    argv += 2;
  }
  if (argc < 5) { fprintf(stderr, "usage: [-ctk type] [-ctv type] model out.f32 n_greedy ids...\n"); return 1; }
  llama_backend_init();
  auto mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) return 2;
  std::vector<llama_token> toks;
  for (int i = 4; i < argc; ++i) toks.push_back(atoi(argv[i]));
  int n_greedy = atoi(argv[3]);
  auto cp = llama_context_default_params();
  cp.n_ctx = 1024; cp.n_batch = 512; cp.n_ubatch = 512; cp.n_threads = 2; cp.n_threads_batch = 2;
  cp.type_k = type_k; cp.type_v = type_v;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return 5;
  const int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
  llama_batch b = llama_batch_init(toks.size(), 0, 1);
  for (size_t i = 0; i < toks.size(); ++i) { b.token[i]=toks[i]; b.pos[i]=i; b.n_seq_id[i]=1; b.seq_id[i][0]=0; b.logits[i]=1; }
  b.n_tokens = toks.size();
  if (llama_decode(ctx, b)) return 3;
  FILE* f = fopen(argv[2], "wb");
  for (size_t i = 0; i < toks.size(); ++i) fwrite(llama_get_logits_ith(ctx, i), 4, V, f);
  fclose(f);
  const float* last = llama_get_logits_ith(ctx, toks.size() - 1);
  int pos = toks.size();
  for (int g = 0; g < n_greedy; ++g) {
    int best = 0; for (int i = 1; i < V; ++i) if (last[i] > last[best]) best = i;
    printf("%d ", best);
    llama_batch one = llama_batch_get_one(&best, 1);
    if (llama_decode(ctx, one)) return 4;
    last = llama_get_logits_ith(ctx, -1);
    ++pos;
  }
  printf("\n");
  return 0;
}
