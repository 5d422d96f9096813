#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace tandem::runtime {

Sampler::Sampler(SamplerParams params, int64_t n_vocab)
    : params_(params), rng_(params.seed), counts_(static_cast<size_t>(n_vocab), 0) {
  if (params_.top_p <= 0.0f) fail("top-p must be > 0 (got {})", params_.top_p);
  if (params_.repeat_penalty <= 0.0f) fail("repeat penalty must be > 0 (got {})", params_.repeat_penalty);
  candidates_.reserve(static_cast<size_t>(n_vocab));
  probs_.reserve(static_cast<size_t>(n_vocab));
}

void Sampler::reset() {
  recent_.clear();
  std::fill(counts_.begin(), counts_.end(), 0);
  rng_.seed(params_.seed);
}

void Sampler::accept(int32_t token) {
  if (params_.penalty_last_n <= 0 || token < 0 || static_cast<size_t>(token) >= counts_.size()) return;
  if (static_cast<int32_t>(recent_.size()) == params_.penalty_last_n) {
    --counts_[static_cast<size_t>(recent_.front())];
    recent_.erase(recent_.begin());  // short vector (penalty_last_n), cheap
  }
  recent_.push_back(token);
  ++counts_[static_cast<size_t>(token)];
}

int32_t Sampler::argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void Sampler::apply_penalties(std::span<float> logits) {
  const bool any = params_.repeat_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                   params_.frequency_penalty != 0.0f;
  if (!any) return;
  for (size_t i = 0; i < recent_.size(); ++i) {
    const int32_t t = recent_[i];
    // Penalise each distinct token once: only at its last occurrence in the window.
    if (std::find(recent_.begin() + static_cast<long>(i) + 1, recent_.end(), t) != recent_.end()) continue;
    float& l = logits[static_cast<size_t>(t)];
    l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    l -= static_cast<float>(counts_[static_cast<size_t>(t)]) * params_.frequency_penalty + params_.presence_penalty;
  }
}

int32_t Sampler::sample(std::span<float> logits) {
  apply_penalties(logits);
  if (params_.temperature <= 0.0f) return argmax(logits);

  candidates_.clear();
  for (size_t i = 0; i < logits.size(); ++i) candidates_.emplace_back(logits[i], static_cast<int32_t>(i));
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t n = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    n = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<long>(n), candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  // Probabilities of the kept candidates (softmax at temperature 1, as llama.cpp filters).
  auto softmax_of = [&](size_t count, float temperature) {
    probs_.resize(count);
    const float max_logit = candidates_[0].first;
    double sum = 0;
    for (size_t i = 0; i < count; ++i) {
      probs_[i] = std::exp((candidates_[i].first - max_logit) / temperature);
      sum += probs_[i];
    }
    for (size_t i = 0; i < count; ++i) probs_[i] = static_cast<float>(probs_[i] / sum);
  };
  softmax_of(n, 1.0f);
  if (params_.top_p < 1.0f) {
    double cumulative = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cumulative += probs_[i];
      if (cumulative >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  if (params_.min_p > 0.0f) {
    const float threshold = probs_[0] * params_.min_p;
    size_t keep = 1;
    while (keep < n && probs_[keep] >= threshold) ++keep;
    n = keep;
  }
  softmax_of(n, params_.temperature);
  std::discrete_distribution<size_t> pick(probs_.begin(), probs_.begin() + static_cast<long>(n));
  return candidates_[pick(rng_)].second;
}

}  // namespace tandem::runtime
