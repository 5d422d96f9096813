#include "text/tokenizer.h"

#include <algorithm>
#include <optional>

#include "core/error.h"
#include "gguf/gguf_model_files.h"
#include "text/bpe.h"
#include "text/pretokenizer.h"
#include "text/spm.h"
#include "text/unicode.h"

namespace tandem::text {

struct Tokenizer::Impl {
  Vocab vocab;
  std::vector<std::string> pieces;  // decoded bytes per token
  std::vector<TokenId> specials;    // partitioned out of the text, longest first
  std::optional<PreTokenizer> pre;
  std::optional<BpeModel> bpe;
  std::optional<SpmModel> spm;

  // A stretch of input: raw text [begin, end) when token == kNoToken, else one token.
  struct Fragment {
    uint32_t begin, end;
    TokenId token;
  };
  void partition(std::string_view text, const EncodeOptions& options, std::vector<Fragment>& out,
                 std::vector<Fragment>& scratch) const;
  void build_pieces();
};

namespace {

std::string unescape_spm(std::string_view text) {
  static constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.substr(i, 3) == kSpace) {
      out += ' ';
      i += 3;
    } else {
      out += text[i++];
    }
  }
  return out;
}

int byte_token_value(std::string_view text) {  // "<0xAB>" -> 0xAB, else -1
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int v = 0;
  for (char c : text.substr(3, 2)) {
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else return -1;
  }
  return v;
}

struct EncodeScratch {
  std::vector<Span> spans, span_scratch;
  BpeScratch bpe;
  SpmScratch spm;
  std::string escaped;
};

}  // namespace

void Tokenizer::Impl::build_pieces() {
  const ByteLevelTable& table = byte_level_table();
  pieces.resize(vocab.size());
  for (size_t id = 0; id < vocab.size(); ++id) {
    const std::string& text = vocab.texts[id];
    std::string& piece = pieces[id];
    switch (vocab.types[id]) {
      case TokenType::Control:
      case TokenType::Unknown:
      case TokenType::UserDefined:
        piece = text;  // shown verbatim (control ones only on request)
        break;
      case TokenType::Byte: {
        const int b = byte_token_value(text);
        if (b >= 0) piece.assign(1, static_cast<char>(b));
        break;
      }
      case TokenType::Normal:
        if (vocab.kind == VocabKind::Spm) {
          piece = unescape_spm(text);
        } else {
          // Each character of a byte-level token stands for one byte.
          for (size_t pos = 0; pos < text.size();) {
            const size_t start = pos;
            const int b = table.byte_of(next_codepoint(text, pos));
            if (b >= 0) piece += static_cast<char>(b);
            else piece.append(text, start, pos - start);  // not byte-level: keep as is
          }
        }
        break;
      default:  // unused/undefined tokens decode to nothing, as in llama.cpp
        break;
    }
  }
}

void Tokenizer::Impl::partition(std::string_view text, const EncodeOptions& options,
                                std::vector<Fragment>& out, std::vector<Fragment>& scratch) const {
  const bool parse_special = options.parse_special;
  // Whether [b, e) overlaps a range where specials are not matched (ranges are sorted).
  auto in_plain_text = [&](size_t b, size_t e) {
    for (const auto& [pb, pe] : options.plain_ranges) {
      if (pb >= e) break;
      if (pe > b) return true;
    }
    return false;
  };
  out.clear();
  if (text.empty()) return;
  out.push_back({0, static_cast<uint32_t>(text.size()), kNoToken});
  for (const TokenId id : specials) {
    if (!parse_special && vocab.is_control(id)) continue;
    const std::string& s = vocab.texts[static_cast<size_t>(id)];
    if (text.find(s) == std::string_view::npos) continue;  // the common case: skip cheaply
    scratch.swap(out);
    out.clear();
    for (const Fragment& f : scratch) {
      if (f.token != kNoToken) {
        out.push_back(f);
        continue;
      }
      uint32_t pos = f.begin;
      for (size_t from = pos;;) {
        const size_t hit = text.substr(0, f.end).find(s, from);
        if (hit == std::string_view::npos) break;
        if (in_plain_text(hit, hit + s.size())) {
          from = hit + 1;
          continue;
        }
        if (hit > pos) out.push_back({pos, static_cast<uint32_t>(hit), kNoToken});
        out.push_back({static_cast<uint32_t>(hit), static_cast<uint32_t>(hit + s.size()), id});
        pos = static_cast<uint32_t>(hit + s.size());
        from = pos;
      }
      if (pos < f.end) out.push_back({pos, f.end, kNoToken});
    }
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_gguf(const gguf::File& file) {
  auto impl = std::make_unique<Impl>();
  impl->vocab = Vocab::from_gguf(file);
  const Vocab& v = impl->vocab;
  try {
    if (v.kind == VocabKind::Bpe) {
      bool ignore_merges = false;
      impl->pre.emplace(pre_tokenizer_patterns(v.pre, &ignore_merges));
      impl->bpe.emplace(v, ignore_merges);
    } else {
      impl->spm.emplace(v);
    }
  } catch (const Error& e) {
    fail("{}: {}", file.name(), e.what());
  }
  for (size_t id = 0; id < v.size(); ++id) {
    const TokenType t = v.types[id];
    const bool special = t == TokenType::Control || t == TokenType::Unknown || t == TokenType::UserDefined;
    if (special && !v.texts[id].empty()) impl->specials.push_back(static_cast<TokenId>(id));
  }
  // Longest first, so a token that contains another wins (ties: lower id first).
  std::stable_sort(impl->specials.begin(), impl->specials.end(), [&](TokenId a, TokenId b) {
    return v.texts[size_t(a)].size() > v.texts[size_t(b)].size();
  });
  impl->build_pieces();
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::open(const std::filesystem::path& path) {
  const gguf::ModelFiles files = gguf::ModelFiles::open(path);
  return from_gguf(files.primary());
}

const Vocab& Tokenizer::vocab() const { return impl_->vocab; }

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<TokenId> out;
  encode(text, options, out);
  return out;
}

void Tokenizer::encode(std::string_view text, const EncodeOptions& options,
                       std::vector<TokenId>& out) const {
  if (text.size() >= UINT32_MAX) fail("text of {} bytes is too long to tokenize", text.size());
  const Impl& m = *impl_;
  const Vocab& v = m.vocab;
  thread_local EncodeScratch s;
  thread_local std::vector<Impl::Fragment> fragments, fragment_scratch;
  m.partition(text, options, fragments, fragment_scratch);

  if (options.add_special && v.add_bos) {
    if (v.bos == kNoToken) fail("the vocabulary asks for a BOS token (add_bos_token) but has none");
    out.push_back(v.bos);
  }
  bool after_special = true;  // SPM: a space goes before text at the start and after specials
  for (const Impl::Fragment& f : fragments) {
    if (f.token != kNoToken) {
      out.push_back(f.token);
      after_special = true;
      continue;
    }
    const std::string_view raw = text.substr(f.begin, f.end - f.begin);
    if (m.bpe) {
      s.spans.clear();
      m.pre->split(raw, s.spans, s.span_scratch);
      for (const Span& sp : s.spans) m.bpe->encode_piece(raw.substr(sp.begin, sp.end - sp.begin), out, s.bpe);
    } else {
      s.escaped.clear();
      if (v.add_space_prefix && after_special) s.escaped += "\xE2\x96\x81";
      for (char c : raw) {
        if (c == ' ') s.escaped += "\xE2\x96\x81";
        else s.escaped += c;
      }
      m.spm->encode(s.escaped, out, s.spm);
    }
    after_special = false;
  }
  if (options.add_special && v.add_eos) {
    if (v.eos == kNoToken) fail("the vocabulary asks for an EOS token (add_eos_token) but has none");
    out.push_back(v.eos);
  }
}

const std::string& Tokenizer::piece(TokenId id) const {
  if (!impl_->vocab.valid(id)) fail("token id {} is out of range (vocabulary of {})", id, impl_->vocab.size());
  return impl_->pieces[static_cast<size_t>(id)];
}

bool Tokenizer::hidden_unless_special(TokenId id) const {
  return impl_->vocab.valid(id) && impl_->vocab.is_control(id);
}

bool Tokenizer::strips_space_prefix() const {
  return impl_->vocab.kind == VocabKind::Spm && impl_->vocab.add_space_prefix;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, const DecodeOptions& options) const {
  std::string out;
  bool at_start = options.strip_space_prefix && strips_space_prefix();
  for (const TokenId id : ids) {
    const std::string& p = piece(id);
    if (hidden_unless_special(id)) {
      if (options.show_special) out += p;
      continue;  // a leading BOS (or other control token) keeps the strip pending
    }
    if (at_start && !p.empty() && p[0] == ' ') out.append(p, 1);
    else out += p;
    if (!p.empty()) at_start = false;
  }
  return out;
}

}  // namespace tandem::text
