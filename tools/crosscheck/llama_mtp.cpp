// Cross-check driver for the MTP (NextN) draft block of Qwen3.5/3.6 files: runs llama.cpp's
// trunk over token ids, takes its hidden states h (after output_norm, what feeds the block),
// then runs llama.cpp's MTP context (LLAMA_CONTEXT_TYPE_MTP) over the pairs as its
// speculative driver lays them out: position p holds token x_p with h_{p-1} (zeros at p = 0).
// Writes OUT.h.f32 ([n][n_embd], the trunk's h rows) and OUT.mtp.f32 ([n][vocab], the block's
// logits at every position), so tandem's block can be fed the very same inputs.
// Not part of tandem: build it against a llama.cpp built beside the checkout, e.g.
//   g++ -O2 -std=c++17 tools/crosscheck/llama_mtp.cpp -I$PEER/include -I$PEER/ggml/include -I$PEER/src \
//       -L$PEER/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$PEER/build/bin -o /tmp/llama_mtp
// usage: llama_mtp MODEL OUT_PREFIX TOKEN_ID...   (KV caches f32, so only the math differs)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "llama.h"
#include "llama-ext.h"  // llama_set_embeddings_nextn / llama_get_embeddings_nextn (staging API)

// Position i of sequence 0, with its logits wanted.
static void put(llama_batch& b, int i, llama_token token) {
  b.token[i] = token;
  b.pos[i] = i;
  b.n_seq_id[i] = 1;
  b.seq_id[i][0] = 0;
  b.logits[i] = 1;
}

static bool write_floats(const std::string& path, const float* data, size_t n) {
  FILE* f = fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = fwrite(data, sizeof(float), n, f) == n;
  return fclose(f) == 0 && ok;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: llama_mtp MODEL OUT_PREFIX TOKEN_ID...\n");
    return 1;
  }
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.load_mtp = true;
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) return 2;
  if (llama_model_n_layer_nextn(model) < 1) {
    fprintf(stderr, "%s has no MTP block\n", argv[1]);
    return 2;
  }
  std::vector<llama_token> toks;
  for (int i = 3; i < argc; ++i) toks.push_back(atoi(argv[i]));
  const int n = static_cast<int>(toks.size());
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  const int n_embd = llama_model_n_embd_out(model);

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 512;
  cp.n_batch = 512;
  cp.n_ubatch = 512;
  cp.type_k = GGML_TYPE_F32;
  cp.type_v = GGML_TYPE_F32;
  cp.n_threads = cp.n_threads_batch = 2;
  llama_context* tgt = llama_init_from_model(model, cp);
  if (!tgt) return 3;
  llama_set_embeddings_nextn(tgt, true, /*masked=*/false);
  llama_batch b = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; ++i) put(b, i, toks[i]);
  b.n_tokens = n;
  if (llama_decode(tgt, b) != 0) return 4;
  const float* h = llama_get_embeddings_nextn(tgt);
  if (!h) return 5;
  std::vector<float> hidden(h, h + static_cast<size_t>(n) * n_embd);

  cp.ctx_type = LLAMA_CONTEXT_TYPE_MTP;
  cp.ctx_other = tgt;
  cp.n_rs_seq = 0;
  llama_context* dft = llama_init_from_model(model, cp);
  if (!dft) return 6;
  llama_set_embeddings_nextn(dft, true, /*masked=*/true);
  llama_batch m = llama_batch_init(n, n_embd, 1);
  m.token = static_cast<llama_token*>(malloc(sizeof(llama_token) * n));  // the MTP batch needs both
  for (int i = 0; i < n; ++i) {
    put(m, i, toks[i]);
    float* row = m.embd + static_cast<size_t>(i) * n_embd;
    if (i == 0) {
      memset(row, 0, sizeof(float) * n_embd);
    } else {
      memcpy(row, hidden.data() + static_cast<size_t>(i - 1) * n_embd, sizeof(float) * n_embd);
    }
  }
  m.n_tokens = n;
  if (llama_decode(dft, m) != 0) return 7;
  std::vector<float> logits(static_cast<size_t>(n) * n_vocab);
  for (int i = 0; i < n; ++i) {
    const float* l = llama_get_logits_ith(dft, i);
    if (!l) return 8;
    memcpy(logits.data() + static_cast<size_t>(i) * n_vocab, l, sizeof(float) * n_vocab);
  }
  const std::string prefix = argv[2];
  if (!write_floats(prefix + ".h.f32", hidden.data(), hidden.size())) return 9;
  if (!write_floats(prefix + ".mtp.f32", logits.data(), logits.size())) return 9;
  printf("%d positions, n_embd %d, vocab %d\n", n, n_embd, n_vocab);
  free(m.token);
  m.token = nullptr;
  llama_batch_free(m);
  llama_batch_free(b);
  llama_free(dft);
  llama_free(tgt);
  llama_model_free(model);
  return 0;
}
