#include "text/vocab.h"

#include <bit>
#include <cstring>

#include "core/error.h"

namespace tandem::text {

uint64_t hash_bytes(std::string_view s) {
  // FNV-1a over 8-byte words then bytes, finished with a 64-bit mix: cheap for the short
  // strings tokenizers look up, and good enough for open addressing.
  uint64_t h = 0xcbf29ce484222325ull ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < s.size(); ++i) h = (h ^ static_cast<uint8_t>(s[i])) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

void TokenIndex::build(const std::vector<std::string>& texts) {
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, texts.size() * 2));
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  for (size_t id = 0; id < texts.size(); ++id) {
    const uint64_t h = hash_bytes(texts[id]);
    for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.text == nullptr) {
        slot = Slot{h, &texts[id], static_cast<TokenId>(id)};
        break;
      }
      // Duplicate texts: the last id wins, as in llama.cpp's token_to_id map.
      if (slot.hash == h && *slot.text == texts[id]) {
        slot.id = static_cast<TokenId>(id);
        slot.text = &texts[id];
        break;
      }
    }
  }
}

TokenId TokenIndex::find(std::string_view text) const {
  if (slots_.empty()) return kNoToken;
  const uint64_t h = hash_bytes(text);
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    const Slot& slot = slots_[i];
    if (slot.text == nullptr) return kNoToken;
    if (slot.hash == h && *slot.text == text) return slot.id;
  }
}

namespace {

TokenId optional_id(const gguf::File& file, std::string_view key, size_t n_tokens,
                    TokenId fallback) {
  if (!file.contains(key)) return fallback;
  const uint64_t id = file.get_uint(key);
  // Some converted files carry ids past the vocabulary (e.g. a pad id of the model's
  // embedding size); such an id cannot be produced or decoded, so it is dropped.
  return id < n_tokens ? static_cast<TokenId>(id) : kNoToken;
}

}  // namespace

Vocab Vocab::from_gguf(const gguf::File& file) {
  if (!file.contains("tokenizer.ggml.model")) {
    fail("{}: no tokenizer in this file (key tokenizer.ggml.model is missing)", file.name());
  }
  Vocab v;
  v.model = file.get<std::string>("tokenizer.ggml.model");
  if (v.model == "gpt2") {
    v.kind = VocabKind::Bpe;
  } else if (v.model == "llama") {
    v.kind = VocabKind::Spm;
  } else {
    fail("{}: tokenizer.ggml.model '{}' is not supported (supported: 'gpt2' byte-level BPE, "
         "'llama' SentencePiece)",
         file.name(), v.model);
  }
  v.pre = file.contains("tokenizer.ggml.pre") ? file.get<std::string>("tokenizer.ggml.pre")
                                              : std::string("default");

  v.texts = file.get_array<std::string>("tokenizer.ggml.tokens");
  const size_t n = v.texts.size();
  if (n == 0) fail("{}: tokenizer.ggml.tokens is empty", file.name());
  if (n > static_cast<size_t>(INT32_MAX)) fail("{}: too many tokens ({})", file.name(), n);

  v.types.assign(n, TokenType::Normal);
  if (file.contains("tokenizer.ggml.token_type")) {
    const auto& types = file.get_array<int32_t>("tokenizer.ggml.token_type");
    if (types.size() != n) {
      fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", file.name(), types.size(), n);
    }
    for (size_t i = 0; i < n; ++i) {
      const int32_t t = types[i];
      v.types[i] = (t >= 0 && t <= 6) ? static_cast<TokenType>(t) : TokenType::Undefined;
    }
  }

  if (v.kind == VocabKind::Spm) {
    const auto& scores = file.get_array<float>("tokenizer.ggml.scores");
    if (scores.size() != n) {
      fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", file.name(), scores.size(), n);
    }
    v.scores = scores;
    // SentencePiece defaults (llama.cpp's): <unk>=0, <s>=1, </s>=2, BOS added, space prefix.
    v.unk = 0;
    v.bos = n > 1 ? 1 : kNoToken;
    v.eos = n > 2 ? 2 : kNoToken;
    v.add_bos = true;
    v.add_space_prefix = true;
  } else {
    v.merges = file.get_array<std::string>("tokenizer.ggml.merges");
  }

  v.bos = optional_id(file, "tokenizer.ggml.bos_token_id", n, v.bos);
  v.eos = optional_id(file, "tokenizer.ggml.eos_token_id", n, v.eos);
  v.unk = optional_id(file, "tokenizer.ggml.unknown_token_id", n, v.unk);
  v.pad = optional_id(file, "tokenizer.ggml.padding_token_id", n, v.pad);
  v.add_bos = file.get_or<bool>("tokenizer.ggml.add_bos_token", v.add_bos);
  v.add_eos = file.get_or<bool>("tokenizer.ggml.add_eos_token", v.add_eos);
  v.add_space_prefix = file.get_or<bool>("tokenizer.ggml.add_space_prefix", v.add_space_prefix);

  v.index.build(v.texts);
  return v;
}

}  // namespace tandem::text
