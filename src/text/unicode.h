// UTF-8 helpers and the GPT-2 byte<->character table used by byte-level BPE vocabularies.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tandem::text {

// Length of the UTF-8 sequence that starts with `lead` (1 for stray continuation bytes,
// so a scan over arbitrary bytes always advances).
inline size_t utf8_seq_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

void append_utf8(std::string& out, uint32_t cp);

// Decodes the code point at `pos` and advances `pos`; invalid bytes decode as U+FFFD and
// advance by one so that callers never loop forever.
uint32_t next_codepoint(std::string_view s, size_t& pos);

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Number of bytes at the end of `s` that start a multi-byte sequence which is not yet
// complete (0..3). Those bytes must be held back by a streaming decoder.
size_t incomplete_utf8_tail(std::string_view s);

// Byte-level BPE (GPT-2) maps every byte to a printable code point so that token texts
// are valid strings: printable Latin-1 bytes map to themselves, the rest to U+0100 + n.
struct ByteLevelTable {
  std::array<std::string, 256> byte_to_utf8;  // the character for each byte, as UTF-8
  std::array<int16_t, 324> cp_to_byte;        // inverse for code points < 324, -1 if none
  int byte_of(uint32_t cp) const { return cp < cp_to_byte.size() ? cp_to_byte[cp] : -1; }
};
const ByteLevelTable& byte_level_table();

}  // namespace tandem::text
