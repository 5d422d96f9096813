#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace tandem::runtime {

Sampler::Sampler(SamplerParams params, int64_t n_vocab)
    : params_(params), rng_(params.seed), counts_(static_cast<size_t>(n_vocab), 0) {
  if (params_.top_p <= 0.0f) fail("top-p must be > 0 (got {})", params_.top_p);
  if (params_.repeat_penalty <= 0.0f) fail("repeat penalty must be > 0 (got {})", params_.repeat_penalty);
  candidates_.reserve(static_cast<size_t>(n_vocab));
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

namespace {
bool more_likely(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}
}  // namespace

void Sampler::sort_front(size_t count) {
  count = std::min(count, candidates_.size());
  if (count <= sorted_) return;
  std::partial_sort(candidates_.begin() + static_cast<long>(sorted_), candidates_.begin() + static_cast<long>(count),
                    candidates_.end(), more_likely);
  sorted_ = count;
}

// The chain without sorting the vocabulary when it need not be: top-p and min-p keep a
// prefix of the tokens by probability, and that prefix is usually a few dozen tokens out of
// 150k. The normaliser is summed over every candidate in one pass; then the front is sorted
// in growing steps only as far as the kept set reaches. (A full sort of a 151k vocabulary per
// token, as top-k 0 used to cost, made the server's sampling slower than its forward pass.)
std::span<const std::pair<float, int32_t>> Sampler::distribution(std::span<float> logits) {
  apply_penalties(logits);
  candidates_.clear();
  sorted_ = 0;
  float max_logit = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    candidates_.emplace_back(logits[i], static_cast<int32_t>(i));
    max_logit = std::max(max_logit, logits[i]);
  }
  size_t n = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    n = static_cast<size_t>(params_.top_k);
    sort_front(n);
  }
  const bool top_p_on = params_.top_p < 1.0f;
  const bool truncating = top_p_on || params_.min_p > 0.0f;
  if (truncating) {
    // Probabilities at temperature 1 over the top-k set, as llama.cpp filters.
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(candidates_[i].first - max_logit));
    // min-p keeps tokens with p >= min_p * p_max: a bound on the logit, known before sorting.
    const double min_logit = params_.min_p > 0.0f ? max_logit + std::log(static_cast<double>(params_.min_p))
                                                  : -std::numeric_limits<double>::infinity();
    double cumulative = 0;
    size_t keep = 0;
    for (size_t step = 64; keep < n; step *= 8) {
      sort_front(std::min(n, step));
      for (; keep < sorted_; ++keep) {
        if (keep > 0 && candidates_[keep].first < min_logit) break;
        cumulative += std::exp(static_cast<double>(candidates_[keep].first - max_logit)) / sum;
        if (top_p_on && cumulative >= params_.top_p) {
          ++keep;
          break;
        }
      }
      if (keep < sorted_ || (top_p_on && cumulative >= params_.top_p)) break;
    }
    n = std::max<size_t>(keep, 1);
  }
  // Final probabilities at the sampling temperature, stored over the logits.
  double sum = 0;
  const float inv_t = 1.0f / params_.temperature;
  for (size_t i = 0; i < n; ++i) {
    const float p = std::exp((candidates_[i].first - max_logit) * inv_t);
    candidates_[i].first = p;
    sum += p;
  }
  for (size_t i = 0; i < n; ++i) candidates_[i].first = static_cast<float>(candidates_[i].first / sum);
  return {candidates_.data(), n};
}

int32_t Sampler::sample(std::span<float> logits) {
  if (params_.temperature <= 0.0f) {
    apply_penalties(logits);
    return argmax(logits);
  }
  const std::span<const std::pair<float, int32_t>> kept = distribution(logits);
  // One uniform draw walked over the kept tokens (no allocation, unlike discrete_distribution).
  double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  for (const auto& [p, token] : kept) {
    u -= p;
    if (u < 0) return token;
  }
  return kept.back().second;  // rounding left u a hair above zero
}

}  // namespace tandem::runtime
