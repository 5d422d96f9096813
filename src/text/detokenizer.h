// Streaming detokenization: tokens arrive one at a time (as a model generates them) and
// text is released only in complete UTF-8 characters, so a character split over several
// byte tokens is never shown half-done. The concatenation of everything push() and
// finish() return equals Tokenizer::decode of the whole sequence.
#pragma once

#include <string>

#include "text/tokenizer.h"

namespace tandem::text {

class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options = {});

  // Adds one token; returns the text that is now complete (possibly empty).
  std::string push(TokenId id);
  // End of stream: returns whatever is held back (an unfinished UTF-8 sequence, as is).
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  DecodeOptions options_;
  std::string pending_;
  bool at_start_ = true;  // no text token seen yet (space prefix still to strip)
};

}  // namespace tandem::text
