// When generation ends: end-of-generation tokens and stop strings.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.h"
#include "text/vocab.h"

namespace tandem::text {

// EOS, EOT and EOM ids from the metadata, plus the control tokens that chat models end a
// turn with (<|im_end|>, <|endoftext|>, <|eot_id|>, ...), as llama.cpp also treats them.
std::set<TokenId> end_of_generation_tokens(const Vocab& vocab, const gguf::File& file);

// Watches streamed text for stop strings. Text that could still be the start of a stop
// string is held back, so the user never sees part of one.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Adds text; returns what can be shown now. After a stop string appears, stopped() is
  // true and the returned text ends just before it.
  std::string push(std::string_view text);
  // End of generation: releases what was held back.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace tandem::text
