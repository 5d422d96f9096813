// A conversation rendered by its chat template and tokenized so that only the template's
// own markup can produce control tokens: text from a user, an assistant turn or a tool
// result stays text even when it spells "<|im_start|>" or "<tool_call>". The parts of the
// rendered prompt that came from message strings are found by rendering a second time with
// each string replaced by a unique marker; those byte ranges are tokenized without special
// tokens, everything else with them, in one pass (so token boundaries are those of the
// whole text).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace tandem::text {

struct ChatPrompt {
  std::string text;                                // the rendered prompt
  std::vector<TokenId> tokens;                     // with BOS when the vocabulary adds one
  std::vector<std::pair<size_t, size_t>> message_text;  // byte ranges of message strings in `text`
};

// Throws tandem::Error when the template fails, or when a message string holds a special
// token's text at a place this template transforms so that it cannot be kept apart.
ChatPrompt encode_chat(const ChatTemplate& chat, const Tokenizer& tokenizer, const ChatInputs& inputs);

}  // namespace tandem::text
