// Turns logits into the next token. The chain follows llama.cpp's default order so that
// the same flags mean the same thing: penalties -> top-k -> top-p -> min-p -> temperature
// -> draw. temperature <= 0 means greedy (argmax, lowest id wins ties).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace tandem::runtime {

struct SamplerParams {
  float temperature = 0.8f;
  int32_t top_k = 40;            // <= 0: off
  float top_p = 0.95f;           // >= 1: off
  float min_p = 0.05f;           // <= 0: off
  float repeat_penalty = 1.0f;   // 1: off; divides positive logits, multiplies negative ones
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t penalty_last_n = 64;   // how many recent tokens the penalties look at
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplerParams params, int64_t n_vocab);
  // Picks a token from `logits` (n_vocab values; modified in place) given the history.
  int32_t sample(std::span<float> logits);
  // The tokens the chain keeps for `logits` (penalties applied in place) and their final
  // probabilities (most likely first whenever a filter cut the set); valid until the next
  // call. Not for greedy sampling.
  std::span<const std::pair<float, int32_t>> distribution(std::span<float> logits);
  // Records a token that entered the context (prompt or generated) for the penalties.
  void accept(int32_t token);
  void reset();

  static int32_t argmax(std::span<const float> logits);

 private:
  void apply_penalties(std::span<float> logits);
  // Sorts the `count` most likely candidates to the front (a partial sort of the vocabulary).
  void sort_front(size_t count);

  SamplerParams params_;
  std::mt19937_64 rng_;
  std::vector<int32_t> recent_;              // ring of the last penalty_last_n tokens
  std::vector<int32_t> counts_;              // per-token count within recent_
  std::vector<std::pair<float, int32_t>> candidates_;  // reused every call: (logit, then probability; token)
  size_t sorted_ = 0;                                  // how many of candidates_ are in order
};

}  // namespace tandem::runtime
