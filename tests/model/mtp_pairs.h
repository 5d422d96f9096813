// Runs a model's MTP block over pairs of (trunk hidden row, token): pair i is hidden row i
// with tokens[i]. The model tests feed the block this way in several calls on one cache,
// as a drafter catching up would.
#pragma once

#include <cstdint>
#include <span>

#include "model/model.h"

namespace tandem::testing {

// Pairs [from, from + count) through `cache`: every pair's logits to logits + from * n_vocab,
// and (when hidden_out is given) the block's output rows to hidden_out + from * n_embd.
inline void run_mtp_pairs(const model::Model& model, const model::Backends& be, model::Workspace& ws,
                          model::SequenceState& cache, std::span<const int32_t> tokens, const float* hidden,
                          int64_t from, int64_t count, float* logits, float* hidden_out = nullptr) {
  const int64_t V = model.hparams().n_vocab, D = model.hparams().n_embd;
  model::MtpInput m;
  m.state = &cache;
  m.tokens = tokens.subspan(static_cast<size_t>(from), static_cast<size_t>(count));
  m.hidden = hidden + from * D;
  m.logits = logits + from * V;
  m.all_logits = true;
  if (hidden_out != nullptr) m.hidden_out = hidden_out + from * D;
  model.mtp_forward(be, ws, m);
}

}  // namespace tandem::testing
