// Perplexity the way llama.cpp's llama-perplexity measures it, so the two numbers compare:
// the token stream is cut into chunks of n_ctx tokens, each chunk is evaluated from an
// empty context (its first token replaced by BOS when the vocabulary adds one), and only
// the second half of each chunk is scored (every scored token has >= n_ctx/2 of context).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "model/model.h"

namespace tandem::runtime {

struct PerplexityResult {
  double ppl = 0;        // exp(mean negative log-likelihood)
  double ppl_error = 0;  // one standard error, as llama.cpp prints it
  int64_t n_chunks = 0;
  int64_t n_scored = 0;  // tokens whose probability was scored
};

// `bos` < 0: no BOS substitution. max_chunks < 0: as many as the tokens allow.
// progress(chunk_index, running_ppl) is called after each chunk.
PerplexityResult perplexity(const model::Model& model, const model::Backends& backends, std::span<const int32_t> tokens,
                            int64_t n_ctx, int32_t bos, int64_t max_chunks, int64_t n_ubatch, model::KvCacheTypes kv,
                            const std::function<void(int64_t, double)>& progress = {});

}  // namespace tandem::runtime
