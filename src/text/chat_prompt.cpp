#include "text/chat_prompt.h"

#include <algorithm>

#include "core/error.h"

namespace tandem::text {
namespace {

using Json = nlohmann::ordered_json;

// U+E000 <index> U+E001: private-use characters no tokenizer treats as special, and that no
// message of a real conversation is expected to contain (a message that does is still
// handled: see the fallback below).
constexpr std::string_view kOpen = "\xEE\x80\x80", kClose = "\xEE\x80\x81";

std::string marker(size_t i) { return std::string(kOpen) + std::to_string(i) + std::string(kClose); }

// Replaces each string a caller wrote (message content, reasoning, text parts, tool
// results) by a marker, collecting the originals in order.
void mark_strings(Json& messages, std::vector<std::string>& originals) {
  auto mark = [&](Json& v) {
    if (!v.is_string()) return;
    originals.push_back(v.get<std::string>());
    v = marker(originals.size() - 1);
  };
  for (Json& m : messages) {
    if (!m.is_object()) continue;
    if (m.contains("content")) {
      Json& c = m["content"];
      if (c.is_string()) {
        mark(c);
      } else if (c.is_array()) {
        for (Json& part : c) {
          if (part.is_object() && part.contains("text")) mark(part["text"]);
        }
      }
    }
    if (m.contains("reasoning_content")) mark(m["reasoning_content"]);
  }
}

bool has_special_text(const Tokenizer& tokenizer, std::string_view s) {
  const Vocab& v = tokenizer.vocab();
  if (s.find('<') == std::string_view::npos && s.find('[') == std::string_view::npos) {
    // Every special token of the supported vocabularies starts with '<' or '['; cheap exit.
    return false;
  }
  for (size_t id = 0; id < v.size(); ++id) {
    const TokenType t = v.types[id];
    const bool special = t == TokenType::Control || t == TokenType::UserDefined;
    if (special && !v.texts[id].empty() && s.find(v.texts[id]) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

ChatPrompt encode_chat(const ChatTemplate& chat, const Tokenizer& tokenizer, const ChatInputs& inputs) {
  ChatPrompt out;
  out.text = chat.render(inputs);

  ChatInputs marked = inputs;
  std::vector<std::string> originals;
  mark_strings(marked.messages, originals);
  bool exact = false;
  if (!originals.empty()) {
    // Rebuild the prompt from the marked render: it must equal the real one byte for byte,
    // else the template transformed a string (trimmed it, split it) and the ranges are unknown.
    const std::string with_markers = chat.render(marked);
    std::string rebuilt;
    std::vector<std::pair<size_t, size_t>> ranges;
    size_t at = 0;
    bool ok = true;
    while (ok) {
      const size_t open = with_markers.find(kOpen, at);
      if (open == std::string::npos) {
        rebuilt.append(with_markers, at);
        break;
      }
      const size_t close = with_markers.find(kClose, open + kOpen.size());
      size_t index = 0;
      const std::string digits = close == std::string::npos ? "" : with_markers.substr(open + kOpen.size(), close - open - kOpen.size());
      ok = !digits.empty() && digits.size() < 8 && std::all_of(digits.begin(), digits.end(), ::isdigit);
      if (!ok) break;
      index = std::stoul(digits);
      ok = index < originals.size();
      if (!ok) break;
      rebuilt.append(with_markers, at, open - at);
      ranges.emplace_back(rebuilt.size(), rebuilt.size() + originals[index].size());  // ascending, as plain_ranges wants
      rebuilt += originals[index];
      at = close + kClose.size();
    }
    exact = ok && rebuilt == out.text;
    if (exact) out.message_text = std::move(ranges);
  } else {
    exact = true;
  }
  if (!exact) {
    // The template reshaped some string: no ranges are known. Safe only when no caller's
    // string could produce a special token.
    for (size_t i = 0; i < originals.size(); ++i) {
      if (has_special_text(tokenizer, originals[i])) {
        fail("a message contains the text of a special token (e.g. '<|im_start|>'), and this chat template "
             "rewrites message text, so it cannot be kept as plain text; remove it from the message");
      }
    }
  }
  EncodeOptions enc;
  enc.add_special = true;
  enc.parse_special = true;
  enc.plain_ranges = out.message_text;
  out.tokens = tokenizer.encode(out.text, enc);
  return out;
}

}  // namespace tandem::text
