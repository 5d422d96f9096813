#include "text/detokenizer.h"

#include "text/unicode.h"

namespace tandem::text {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options)
    : tokenizer_(&tokenizer), options_(options),
      at_start_(options.strip_space_prefix && tokenizer.strips_space_prefix()) {}

std::string StreamDecoder::push(TokenId id) {
  const std::string& p = tokenizer_->piece(id);
  if (tokenizer_->hidden_unless_special(id)) {
    if (options_.show_special) pending_ += p;
  } else {
    // Same rule as Tokenizer::decode: the first text token loses the space prefix.
    if (at_start_ && !p.empty() && p[0] == ' ') pending_.append(p, 1);
    else pending_ += p;
    if (!p.empty()) at_start_ = false;
  }
  // Release everything except a trailing UTF-8 sequence that is still incomplete.
  const size_t keep = incomplete_utf8_tail(pending_);
  std::string ready = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return ready;
}

std::string StreamDecoder::finish() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace tandem::text
