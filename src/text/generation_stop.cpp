#include "text/generation_stop.h"

#include <algorithm>

namespace tandem::text {

std::set<TokenId> end_of_generation_tokens(const Vocab& vocab, const gguf::File& file) {
  std::set<TokenId> ids;
  if (vocab.valid(vocab.eos)) ids.insert(vocab.eos);
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    uint64_t id = 0;
    if (const gguf::Value* v = file.find(key); v && v->to_u64(id) && vocab.valid(static_cast<TokenId>(id))) {
      ids.insert(static_cast<TokenId>(id));
    }
  }
  static const char* const kTurnEnds[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>",
                                          "<end_of_turn>", "<|end|>", "<|return|>", "</s>"};
  for (const char* text : kTurnEnds) {
    const TokenId id = vocab.find(text);
    if (vocab.valid(id) && vocab.is_control(id)) ids.insert(id);
  }
  return ids;
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return {};
  held_ += text;
  for (const std::string& stop : stops_) {
    const size_t at = stop.empty() ? std::string::npos : held_.find(stop);
    if (at != std::string::npos) {
      stopped_ = true;
      std::string out = held_.substr(0, at);
      held_.clear();
      return out;
    }
  }
  // Hold back the longest tail that is a prefix of some stop string.
  size_t keep = 0;
  for (const std::string& stop : stops_) {
    for (size_t n = std::min(stop.size() - (stop.empty() ? 0 : 1), held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, stop, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(held_);
  return stopped_ ? std::string() : out;
}

}  // namespace tandem::text
