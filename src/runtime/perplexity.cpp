#include "runtime/perplexity.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "runtime/session.h"

namespace tandem::runtime {

PerplexityResult perplexity(const model::Model& model, const model::Backends& backends, std::span<const int32_t> tokens,
                            int64_t n_ctx, int32_t bos, int64_t max_chunks, int64_t n_ubatch, model::KvCacheTypes kv,
                            const std::function<void(int64_t, double)>& progress) {
  if (n_ctx < 4) fail("perplexity: context {} is too small", n_ctx);
  const auto n_tokens = static_cast<int64_t>(tokens.size());
  if (n_tokens < 2 * n_ctx) {
    fail("perplexity: the text has {} tokens; a context of {} needs at least {}", n_tokens, n_ctx, 2 * n_ctx);
  }
  int64_t n_chunks = n_tokens / n_ctx;
  if (max_chunks >= 0) n_chunks = std::min(n_chunks, max_chunks);
  const int64_t V = model.hparams().n_vocab, first = n_ctx / 2;
  Session session(model, backends, n_ctx, n_ubatch, kv);
  std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::copy_n(tokens.begin() + c * n_ctx, n_ctx, chunk.begin());
    if (bos >= 0) chunk[0] = bos;
    session.reset();
    const std::vector<float>& logits = session.feed_all_logits(chunk);
    // Score positions first .. n_ctx-2, each predicting the next token of the original text.
    for (int64_t j = first; j < n_ctx - 1; ++j) {
      const float* row = logits.data() + j * V;
      const int32_t target = tokens[static_cast<size_t>(c * n_ctx + j + 1)];
      float max_logit = row[0];
      for (int64_t i = 1; i < V; ++i) max_logit = std::max(max_logit, row[i]);
      double sum = 0;
      for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(row[i] - max_logit));
      const double v = -(static_cast<double>(row[target] - max_logit) - std::log(sum));
      nll += v;
      nll2 += v * v;
      ++count;
    }
    if (progress) progress(c, std::exp(nll / static_cast<double>(count)));
  }
  PerplexityResult r;
  r.n_chunks = n_chunks;
  r.n_scored = count;
  const double mean = nll / static_cast<double>(count);
  r.ppl = std::exp(mean);
  const double var = nll2 / static_cast<double>(count) - mean * mean;
  r.ppl_error = var > 0 && count > 1 ? std::sqrt(var / static_cast<double>(count - 1)) * r.ppl : 0.0;
  return r;
}

}  // namespace tandem::runtime
