#include "text/unicode.h"

#include <vector>

namespace tandem::text {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Decodes one well-formed sequence at `pos`; returns its length, or 0 if malformed.
size_t decode_one(std::string_view s, size_t pos, uint32_t& cp) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[pos + i]); };
  const uint8_t lead = b(0);
  const size_t n = utf8_seq_len(lead);
  if (n == 1) {
    if (lead >= 0x80) return 0;
    cp = lead;
    return 1;
  }
  if (pos + n > s.size()) return 0;
  uint32_t v = lead & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) {
    if ((b(i) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(i) & 0x3F);
  }
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < kMin[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  cp = v;
  return n;
}

}  // namespace

uint32_t next_codepoint(std::string_view s, size_t& pos) {
  uint32_t cp = 0;
  const size_t n = decode_one(s, pos, cp);
  if (n == 0) {
    ++pos;
    return 0xFFFD;
  }
  pos += n;
  return cp;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    uint32_t cp;
    const size_t n = decode_one(s, pos, cp);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

size_t incomplete_utf8_tail(std::string_view s) {
  // Walk back over at most 3 continuation bytes to the lead byte of the last sequence.
  const size_t max_back = std::min<size_t>(s.size(), 4);
  for (size_t back = 1; back <= max_back; ++back) {
    const uint8_t c = static_cast<uint8_t>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const size_t need = utf8_seq_len(c);
    return (c >= 0xC0 && need > back) ? back : 0;
  }
  return 0;
}

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table = [] {
    ByteLevelTable t;
    t.cp_to_byte.fill(-1);
    // Bytes that are printable in Latin-1 keep their value; the others are numbered
    // upwards from U+0100 in byte order (the GPT-2 convention).
    const auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = printable(b) ? static_cast<uint32_t>(b) : next++;
      append_utf8(t.byte_to_utf8[b], cp);
      t.cp_to_byte[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return table;
}

}  // namespace tandem::text
