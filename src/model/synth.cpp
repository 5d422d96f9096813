#include "model/synth.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <system_error>
#include <unordered_set>

#include "core/error.h"
#include "core/half.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "quant/blocks.h"

namespace tandem::model::synth {
namespace {

// ---------------------------------------------------------------------------------------
// Presets: hyper-parameters as the real models' GGUFs carry them (HF config + llama.cpp's
// converter; MODELS.md §2.3 and §3 "Example: Qwen3.5-35B-A3B").
// ---------------------------------------------------------------------------------------

std::vector<Preset> make_presets() {
  std::vector<Preset> all;
  {
    Preset p;
    p.name = "qwen35moe-35b-a3b";
    p.arch = "qwen35moe";
    p.about = "Qwen3.5-35B-A3B: 40 layers (3 DeltaNet : 1 gated attention), 256 experts (8 used) + shared";
    p.n_layer = 40, p.n_embd = 2048, p.n_head = 16, p.n_head_kv = 2, p.head_dim = 256, p.n_rot = 64;
    p.n_vocab = 248320, p.n_ctx_train = 262144, p.rope_freq_base = 1e7f, p.rms_eps = 1e-6f;
    p.n_expert = 256, p.n_expert_used = 8, p.n_ff_expert = 512, p.n_ff_shared = 512;
    p.full_attention_interval = 4, p.ssm_conv_kernel = 4, p.ssm_n_k = 16, p.ssm_n_v = 32, p.ssm_d_state = 128;
    p.rope_sections = {11, 11, 10, 0};
    all.push_back(p);
  }
  {
    Preset p;
    p.name = "qwen3moe-30b-a3b";
    p.arch = "qwen3moe";
    p.about = "Qwen3-30B-A3B: 48 layers, 128 experts (8 used)";
    p.n_layer = 48, p.n_embd = 2048, p.n_head = 32, p.n_head_kv = 4, p.head_dim = 128, p.n_ff = 6144;
    p.n_vocab = 151936, p.n_ctx_train = 40960, p.rope_freq_base = 1e6f, p.rms_eps = 1e-6f;
    p.n_expert = 128, p.n_expert_used = 8, p.n_ff_expert = 768;
    all.push_back(p);
  }
  {
    Preset p;
    p.name = "qwen3-0.6b";
    p.arch = "qwen3";
    p.about = "Qwen3-0.6B: 28 dense layers, tied embeddings";
    p.n_layer = 28, p.n_embd = 1024, p.n_head = 16, p.n_head_kv = 8, p.head_dim = 128, p.n_ff = 3072;
    p.n_vocab = 151936, p.n_ctx_train = 40960, p.rope_freq_base = 1e6f, p.rms_eps = 1e-6f;
    p.tied_embeddings = true;
    all.push_back(p);
  }
  {
    Preset p;
    p.name = "qwen2.5-0.5b";
    p.arch = "qwen2";
    p.about = "Qwen2.5-0.5B: 24 dense layers, q/k/v biases, tied embeddings, D 896 (K-quant fallbacks)";
    p.n_layer = 24, p.n_embd = 896, p.n_head = 14, p.n_head_kv = 2, p.head_dim = 64, p.n_ff = 4864;
    p.n_vocab = 151936, p.n_ctx_train = 32768, p.rope_freq_base = 1e6f, p.rms_eps = 1e-6f;
    p.tied_embeddings = true, p.qkv_bias = true;
    all.push_back(p);
  }
  return all;
}

// llama_ftype ids (llama.h) and each type's default tensor type.
const std::vector<FileType> kFileTypes = {
    {"f32", 0, DType::F32},      {"f16", 1, DType::F16},      {"bf16", 32, DType::BF16},
    {"q4_0", 2, DType::Q4_0},    {"q4_1", 3, DType::Q4_1},    {"q5_0", 8, DType::Q5_0},
    {"q5_1", 9, DType::Q5_1},    {"q8_0", 7, DType::Q8_0},    {"q4_k_s", 14, DType::Q4_K},
    {"q4_k_m", 15, DType::Q4_K}, {"q5_k_s", 16, DType::Q5_K}, {"q5_k_m", 17, DType::Q5_K},
    {"q6_k", 18, DType::Q6_K},
};

bool is_quantized(DType t) { return dtype_info(t).block_elems > 1; }
int64_t block_elems(DType t) { return dtype_info(t).block_elems; }
bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }
bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// ---------------------------------------------------------------------------------------
// The quantization mix: llama-quantize's llama_tensor_get_type (src/llama-quant.cpp),
// reduced to the file types above and the Qwen tensors. For Q4_K_M that is:
//   - 1-D tensors, *_norm.weight, ffn_gate_inp.weight (router), ssm_conv1d, anything not
//     ending in "weight" (ssm_a): kept as the converter wrote them, F32;
//   - output.weight (and token_embd when tied): Q6_K; token_embd (untied): Q4_K;
//   - attn_v / attn_qkv (one per layer, so the counter is the layer index) and ffn_down*
//     (routed and shared experts): Q6_K where use_more_bits(layer, n_layer), else Q4_K;
//   - with exactly 8 experts attn_v/attn_k become Q8_0 and attn_output Q5_K (Mixtral rule);
//   - everything else (attn_q/k/output, attn_gate, ssm_alpha/beta/out, ffn_gate/up*): Q4_K;
//   - rows whose length is not a multiple of the block: Q4_K -> Q5_0, Q5_K -> Q5_1,
//     Q6_K -> Q8_0, output Q8_0, then F16 if still no fit (where llama.cpp would throw).
// ---------------------------------------------------------------------------------------

bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

DType fallback(DType t, int64_t ncols) {
  if (ncols % block_elems(t) == 0) return t;
  DType r = DType::F16;
  if (t == DType::Q4_K) r = DType::Q5_0;
  if (t == DType::Q5_K) r = DType::Q5_1;
  if (t == DType::Q6_K) r = DType::Q8_0;
  return ncols % block_elems(r) == 0 ? r : DType::F16;
}

DType mix_type(const Preset& p, const FileType& ft, const std::string& name, const std::vector<int64_t>& dims,
               int64_t layer) {
  if (dims.size() < 2 || !ends_with(name, "weight") || contains(name, "_norm.weight") ||
      contains(name, "ffn_gate_inp.weight") || contains(name, "ssm_conv1d")) {
    return DType::F32;
  }
  DType t = ft.base;
  if (!is_quantized(t)) return t;
  const std::string_view f = ft.name;
  const bool k_m = f == "q4_k_m" || f == "q5_k_m";
  const int64_t n = p.n_layer, ncols = dims[0];
  const bool output = name == "output.weight", embd = name == "token_embd.weight";
  if (output || (embd && p.tied_embeddings)) {
    if (ncols % block_elems(t) != 0) t = DType::Q8_0;
    else if (t != DType::Q8_0) t = DType::Q6_K;
  } else if (embd) {
    // the file type's default
  } else if (contains(name, "attn_v.weight") || contains(name, "attn_qkv.weight")) {
    if (k_m && use_more_bits(layer, n)) t = DType::Q6_K;
    else if (f == "q4_k_s" && layer < 4) t = DType::Q5_K;
    if (p.n_expert == 8) t = DType::Q8_0;
  } else if (contains(name, "attn_k.weight")) {
    if (p.n_expert == 8) t = DType::Q8_0;
  } else if (contains(name, "ffn_down")) {
    if (k_m && use_more_bits(layer, n)) t = DType::Q6_K;
    else if (f == "q4_k_s" && layer < n / 8) t = DType::Q5_K;
  } else if (contains(name, "attn_output.weight")) {
    if (p.n_expert == 8 && (f == "q4_k_m" || f == "q4_k_s")) t = DType::Q5_K;
  }
  return fallback(t, ncols);
}

// ---------------------------------------------------------------------------------------
// Random numbers: xoshiro256** seeded per tensor from (seed, name), so a tensor's values do
// not depend on which tensors come before it.
// ---------------------------------------------------------------------------------------

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  Rng(uint64_t seed, std::string_view stream) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the stream name
    for (char c : stream) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
    uint64_t x = seed ^ h;
    for (uint64_t& s : s_) s = splitmix64(x);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  float uniform() { return static_cast<float>(next() >> 40) * 0x1.0p-24f; }  // [0, 1)
  void fill(uint8_t* dst, size_t n) {
    for (; n >= 8; n -= 8, dst += 8) {
      const uint64_t r = next();
      std::memcpy(dst, &r, 8);
    }
    if (n > 0) {
      const uint64_t r = next();
      std::memcpy(dst, &r, n);
    }
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// 4096 standard-normal values (mean 0, std 1 exactly); float tensors index it with 12
// random bits per element, which is far cheaper than a Box-Muller per element.
constexpr int kNormalBits = 12;
const std::array<float, 1 << kNormalBits>& normal_table() {
  static const auto table = [] {
    std::array<float, 1 << kNormalBits> t{};
    std::mt19937_64 gen(20240611);
    std::normal_distribution<double> normal;
    double sum = 0, sq = 0;
    std::array<double, 1 << kNormalBits> v{};
    for (double& x : v) x = normal(gen), sum += x;
    const double mean = sum / v.size();
    for (double& x : v) x -= mean, sq += x * x;
    const double inv_std = 1.0 / std::sqrt(sq / v.size());
    for (size_t i = 0; i < v.size(); ++i) t[i] = static_cast<float>(v[i] * inv_std);
    return t;
  }();
  return table;
}

// ---------------------------------------------------------------------------------------
// Quantized blocks made directly: random quants with one fixed scale per tensor chosen so
// the effective weights have std `sigma` and mean ~0. Every bit pattern of the quant
// fields is a valid block, so only the scales need care.
// ---------------------------------------------------------------------------------------

constexpr float kStdU4 = 4.6097722f;   // std of a uniform integer 0..15
constexpr float kStdU5 = 9.2330927f;   // 0..31
constexpr float kStdU6 = 18.472953f;   // 0..63
constexpr float kStdI8 = 73.608877f;   // -127..127 (-128 is folded onto -127)

std::array<uint8_t, 12> pack_k_scales(uint8_t sc, uint8_t m) {
  // get_scale_min_k4's layout with every group's (scale, min) = (sc, m).
  std::array<uint8_t, 12> s{};
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc & 63) | ((sc >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((m & 63) | ((m >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc & 15) | ((m & 15) << 4));
  }
  return s;
}

class BlockMaker {
 public:
  BlockMaker(DType type, float sigma) : type_(type) {
    switch (type) {
      case DType::Q4_0: d_ = f32_to_f16(sigma / kStdU4); break;
      case DType::Q5_0: d_ = f32_to_f16(sigma / kStdU5); break;
      case DType::Q4_1: set_d_m(sigma / kStdU4, 7.5f); break;
      case DType::Q5_1: set_d_m(sigma / kStdU5, 15.5f); break;
      case DType::Q8_0: d_ = f32_to_f16(sigma / kStdI8); break;
      case DType::Q4_K: {
        // x = d*32*q - (8d)*30: mean of q is 7.5, so 8*30 = 32*7.5 centres it exactly.
        const float d = sigma / (32 * kStdU4);
        d_ = f32_to_f16(d), dmin_ = f32_to_f16(8 * d), scales_ = pack_k_scales(32, 30);
        break;
      }
      case DType::Q5_K: {
        const float d = sigma / (32 * kStdU5);  // 16*31 = 32*15.5
        d_ = f32_to_f16(d), dmin_ = f32_to_f16(16 * d), scales_ = pack_k_scales(32, 31);
        break;
      }
      case DType::Q6_K: d_ = f32_to_f16(sigma / (16 * kStdU6)); break;
      default: fail("synth: no random block generator for type {}", dtype_name(type));
    }
  }

  // Writes n_blocks blocks to dst.
  void make(uint8_t* dst, int64_t n_blocks, Rng& rng) const {
    for (int64_t b = 0; b < n_blocks; ++b) {
      switch (type_) {
        case DType::Q4_0: dst = signed_d_block<quant::BlockQ4_0>(dst, rng); break;
        case DType::Q5_0: dst = signed_d_block<quant::BlockQ5_0>(dst, rng); break;
        case DType::Q4_1:
        case DType::Q5_1: {  // d, m, then random quants
          std::memcpy(dst, &d_, 2);
          std::memcpy(dst + 2, &m_, 2);
          const size_t n = dtype_info(type_).block_bytes;
          rng.fill(dst + 4, n - 4);
          dst += n;
          break;
        }
        case DType::Q8_0: {
          quant::BlockQ8_0 blk;
          blk.d = d_;
          rng.fill(reinterpret_cast<uint8_t*>(blk.qs), sizeof blk.qs);
          for (int8_t& q : blk.qs) q = q == -128 ? -127 : q;
          std::memcpy(dst, &blk, sizeof blk);
          dst += sizeof blk;
          break;
        }
        case DType::Q4_K: {
          quant::BlockQ4_K blk;
          blk.d = d_, blk.dmin = dmin_;
          std::memcpy(blk.scales, scales_.data(), 12);
          rng.fill(blk.qs, sizeof blk.qs);
          std::memcpy(dst, &blk, sizeof blk);
          dst += sizeof blk;
          break;
        }
        case DType::Q5_K: {
          quant::BlockQ5_K blk;
          blk.d = d_, blk.dmin = dmin_;
          std::memcpy(blk.scales, scales_.data(), 12);
          rng.fill(reinterpret_cast<uint8_t*>(&blk) + offsetof(quant::BlockQ5_K, qh),
                   sizeof blk.qh + sizeof blk.qs);  // adjacent
          std::memcpy(dst, &blk, sizeof blk);
          dst += sizeof blk;
          break;
        }
        case DType::Q6_K: {
          // Group scales +-16 with random signs: (q - 32) has mean -1/2, the signs cancel it.
          quant::BlockQ6_K blk;
          rng.fill(reinterpret_cast<uint8_t*>(&blk), sizeof blk.ql + sizeof blk.qh);  // at offset 0
          const uint64_t signs = rng.next();
          for (int g = 0; g < 16; ++g) blk.scales[g] = (signs >> g) & 1 ? 16 : -16;
          blk.d = d_;
          std::memcpy(dst, &blk, sizeof blk);
          dst += sizeof blk;
          break;
        }
        default: break;
      }
    }
  }

 private:
  void set_d_m(float d, float mid) { d_ = f32_to_f16(d), m_ = f32_to_f16(-mid * f16_to_f32(d_)); }
  // Q4_0 / Q5_0: x = d * (q - mid) has mean -d/2; a random sign per block cancels it.
  template <typename Block>
  uint8_t* signed_d_block(uint8_t* dst, Rng& rng) const {
    Block blk;
    const uint64_t r = rng.next();
    blk.d = static_cast<uint16_t>(d_ | ((r & 1) << 15));
    rng.fill(reinterpret_cast<uint8_t*>(&blk) + 2, sizeof blk - 2);
    std::memcpy(dst, &blk, sizeof blk);
    return dst + sizeof blk;
  }

  DType type_;
  uint16_t d_ = 0, dmin_ = 0, m_ = 0;
  std::array<uint8_t, 12> scales_{};
};

// ---------------------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------------------

using Entries = std::vector<std::pair<std::string, gguf::Value>>;

// GPT-2's reversible byte -> printable character table (byte-level BPE token texts).
std::vector<std::string> byte_level_chars() {
  auto utf8 = [](uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  std::vector<std::string> chars(256);
  uint32_t extra = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    chars[b] = utf8(printable ? b : 256 + extra++);
  }
  return chars;
}

constexpr int32_t kTokenNormal = 1, kTokenControl = 3, kTokenUnused = 5;

// A self-contained Qwen-style vocabulary: the 256 byte tokens, a few merges (so BPE has
// something to do), the ChatML specials, then filler tokens up to the preset's vocab size.
// Fillers are NORMAL tokens no merge produces, so text never tokenizes into them but a
// random model that samples one prints something readable (" w12345").
Entries synthetic_vocab(const Preset& p) {
  static const char* kMerges[][2] = {
      {"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"i", "n"}, {"Ġ", "a"}, {"e", "r"}, {"o", "n"},
      {"Ġ", "s"}, {"r", "e"}, {"a", "t"}, {"e", "n"}, {"o", "r"}, {"i", "s"}, {"Ġ", "c"},
      {"Ġ", "o"}, {"e", "s"}, {"a", "n"}, {"Ġ", "b"}, {"i", "t"}, {"Ġ", "f"}, {"Ġ", "p"},
      {"Ġo", "f"}, {"n", "d"}, {"Ġa", "nd"}, {"Ċ", "Ċ"}, {"Ġ", "Ġ"}, {"Ġt", "o"}, {"l", "l"},
      {"Ġ", "h"}, {"Ġh", "e"}, {"Ġhe", "ll"}, {"Ġhell", "o"},
  };
  std::vector<std::string> tokens = byte_level_chars();
  std::vector<int32_t> types(tokens.size(), kTokenNormal);
  std::unordered_set<std::string> known(tokens.begin(), tokens.end());
  std::vector<std::string> merges;
  for (const auto& m : kMerges) {
    if (!known.count(m[0]) || !known.count(m[1])) continue;  // merges need both halves
    merges.push_back(std::string(m[0]) + " " + m[1]);
    if (known.insert(std::string(m[0]) + m[1]).second) {
      tokens.push_back(std::string(m[0]) + m[1]);
      types.push_back(kTokenNormal);
    }
  }
  const int64_t endoftext = static_cast<int64_t>(tokens.size());
  for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    tokens.push_back(s);
    types.push_back(kTokenControl);
  }
  const int64_t im_end = endoftext + 2;
  if (static_cast<int64_t>(tokens.size()) > p.n_vocab) {
    fail("synth: preset '{}' has {} vocabulary rows, fewer than the {} tokens of the synthetic vocabulary",
         p.name, p.n_vocab, tokens.size());
  }
  for (int64_t i = static_cast<int64_t>(tokens.size()); i < p.n_vocab; ++i) {
    tokens.push_back("Ġw" + std::to_string(i));
    types.push_back(kTokenNormal);
  }
  Entries e;
  e.reserve(10);
  e.emplace_back("tokenizer.ggml.model", gguf::Value("gpt2"));
  e.emplace_back("tokenizer.ggml.pre", gguf::Value(p.arch.rfind("qwen35", 0) == 0 ? "qwen35" : "qwen2"));
  e.emplace_back("tokenizer.ggml.tokens", gguf::Value(std::move(tokens)));
  e.emplace_back("tokenizer.ggml.token_type", gguf::Value(std::move(types)));
  e.emplace_back("tokenizer.ggml.merges", gguf::Value(std::move(merges)));
  e.emplace_back("tokenizer.ggml.eos_token_id", gguf::Value(static_cast<uint32_t>(im_end)));
  e.emplace_back("tokenizer.ggml.padding_token_id", gguf::Value(static_cast<uint32_t>(endoftext)));
  e.emplace_back("tokenizer.ggml.bos_token_id", gguf::Value(static_cast<uint32_t>(endoftext)));
  e.emplace_back("tokenizer.ggml.add_bos_token", gguf::Value(false));
  e.emplace_back("tokenizer.chat_template",
                 gguf::Value("{%- for message in messages %}"
                             "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
                             "{%- endfor %}"
                             "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"));
  return e;
}

// Every tokenizer.* key of another GGUF, the token list padded to the preset's vocab size
// with "[PAD<i>]" tokens of type UNUSED, as llama.cpp's converter pads Qwen vocabularies.
Entries vocab_from(const std::filesystem::path& path, const Preset& p) {
  const gguf::File file = gguf::File::open(path);
  const size_t n = file.get_array<std::string>("tokenizer.ggml.tokens").size();
  if (static_cast<int64_t>(n) > p.n_vocab) {
    fail("{}: the vocabulary has {} tokens, more than the {} embedding rows of preset '{}'", file.name(), n,
         p.n_vocab, p.name);
  }
  const size_t V = static_cast<size_t>(p.n_vocab);
  Entries e;
  for (const gguf::MetadataEntry& m : file.metadata()) {
    if (m.key.rfind("tokenizer.", 0) != 0) continue;
    if (m.key == "tokenizer.ggml.tokens") {
      std::vector<std::string> tokens = file.get_array<std::string>(m.key);
      std::unordered_set<std::string> known(tokens.begin(), tokens.end());
      for (size_t i = n; i < V; ++i) {
        std::string pad = "[PAD" + std::to_string(i) + "]";
        while (known.count(pad)) pad = "_" + pad;  // never two tokens with one text
        tokens.push_back(pad);
      }
      e.emplace_back(m.key, gguf::Value(std::move(tokens)));
    } else if (m.key == "tokenizer.ggml.token_type") {
      std::vector<int32_t> types = file.get_array<int32_t>(m.key);
      if (types.size() != n) fail("{}: {} has {} entries for {} tokens", file.name(), m.key, types.size(), n);
      types.resize(V, kTokenUnused);
      e.emplace_back(m.key, gguf::Value(std::move(types)));
    } else if (m.key == "tokenizer.ggml.scores") {
      std::vector<float> scores = file.get_array<float>(m.key);
      if (scores.size() != n) fail("{}: {} has {} entries for {} tokens", file.name(), m.key, scores.size(), n);
      scores.resize(V, 0.0f);
      e.emplace_back(m.key, gguf::Value(std::move(scores)));
    } else {
      e.emplace_back(m.key, m.value);
    }
  }
  return e;
}

// ---------------------------------------------------------------------------------------
// Tensor plan
// ---------------------------------------------------------------------------------------

bool is_qwen35(const Preset& p) { return p.arch == "qwen35" || p.arch == "qwen35moe"; }

void check_preset(const Preset& p) {
  const bool ok = p.n_layer > 0 && p.n_embd > 0 && p.n_head > 0 && p.n_head_kv > 0 && p.head_dim > 0 &&
                  p.n_vocab > 0 && p.n_head % p.n_head_kv == 0 &&
                  (p.n_expert > 0 ? p.n_expert_used > 0 && p.n_ff_expert > 0 : p.n_ff > 0) &&
                  (!is_qwen35(p) || (p.full_attention_interval > 0 && p.ssm_conv_kernel > 1 && p.ssm_n_k > 0 &&
                                     p.ssm_n_v % p.ssm_n_k == 0 && p.ssm_d_state > 0));
  if (!ok) fail("synth: preset '{}' has inconsistent hyper-parameters", p.name);
  if (is_qwen35(p) && p.n_layer < p.full_attention_interval) {
    fail("synth: preset '{}': {} layers leave no full-attention layer (every {}th is one)", p.name, p.n_layer,
         p.full_attention_interval);
  }
  if (p.arch == "qwen2" && p.n_head * p.head_dim != p.n_embd) {
    fail("synth: preset '{}': qwen2 files carry no attention.key_length, so heads x head_dim must equal "
         "embedding_length", p.name);
  }
  if (p.arch != "qwen2" && p.arch != "qwen3" && p.arch != "qwen3moe" && p.arch != "qwen35moe") {
    fail("synth: preset '{}': architecture '{}' is not supported (qwen2, qwen3, qwen3moe, qwen35moe)", p.name,
         p.arch);
  }
}

}  // namespace

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = make_presets();
  return all;
}

const Preset& find_preset(std::string_view name) {
  std::string names;
  for (const Preset& p : presets()) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  fail("unknown preset '{}' (valid: {})", name, names);
}

const std::vector<FileType>& file_types() { return kFileTypes; }

const FileType& find_file_type(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "q4_k" || lower == "q5_k") lower += "_m";  // llama-quantize's aliases
  std::string names;
  for (const FileType& t : kFileTypes) {
    if (t.name == lower) return t;
    names += (names.empty() ? "" : ", ") + std::string(t.name);
  }
  fail("unknown --type '{}' (valid: {}; q4_k and q5_k mean q4_k_m and q5_k_m)", name, names);
}

Preset with_layers(const Preset& preset, int64_t n_layer) {
  // Hybrid presets keep at least one full-attention layer: llama.cpp aborts on a hybrid
  // model without any (its KV cache has no layer to index).
  const int64_t min = is_qwen35(preset) ? preset.full_attention_interval : 1;
  if (n_layer < min || n_layer > preset.n_layer) {
    fail("--layers must be {}..{} for preset '{}' (got {}){}", min, preset.n_layer, preset.name, n_layer,
         min > 1 ? fmt::format("; layer {} is the first full-attention layer", min - 1) : "");
  }
  Preset p = preset;
  p.n_layer = n_layer;
  return p;
}

uint64_t PlannedTensor::bytes() const {
  uint64_t n = 1;
  for (int64_t d : dims) n *= static_cast<uint64_t>(d);
  const DTypeInfo& info = dtype_info(type);
  return n / info.block_elems * info.block_bytes;
}

HParams hparams(const Preset& p) {
  check_preset(p);
  HParams hp;
  hp.arch = p.arch;
  hp.n_ctx_train = p.n_ctx_train;
  hp.n_embd = p.n_embd;
  hp.n_layer = p.n_layer;
  hp.n_nextn = p.n_nextn;
  hp.n_head = p.n_head;
  hp.n_head_kv = p.n_head_kv;
  hp.head_dim = p.head_dim;
  hp.n_rot = p.n_rot > 0 ? p.n_rot : p.head_dim;
  hp.n_ff = p.n_ff;
  hp.n_vocab = p.n_vocab;
  hp.rope_freq_base = p.rope_freq_base;
  hp.rms_eps = p.rms_eps;
  hp.n_expert = p.n_expert;
  hp.n_expert_used = p.n_expert_used;
  hp.n_ff_expert = p.n_ff_expert;
  hp.n_ff_shared = p.n_ff_shared > 0 ? p.n_ff_shared : p.n_ff;  // from_gguf's fallback
  if (is_qwen35(p)) {
    hp.full_attention_interval = p.full_attention_interval;
    hp.ssm_conv_kernel = p.ssm_conv_kernel;
    hp.ssm_n_k = p.ssm_n_k;
    hp.ssm_n_v = p.ssm_n_v;
    hp.ssm_d_k = p.ssm_d_state;
    hp.ssm_d_v = p.ssm_d_state;  // the file says inner_size = n_v * d_state
  }
  return hp;
}

std::vector<PlannedTensor> plan_tensors(const Preset& p, const FileType& ft) {
  check_preset(p);
  const int64_t D = p.n_embd, q = p.n_head * p.head_dim, kv = p.n_head_kv * p.head_dim;
  const float s_d = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<PlannedTensor> out;
  // One group per layer (and one before them), each sorted by name: llama-quantize writes
  // tensors in llama_model_loader's order (layer, then name).
  auto add_group = [&](std::vector<PlannedTensor> group, int64_t layer) {
    std::sort(group.begin(), group.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    for (PlannedTensor& t : group) {
      t.type = mix_type(p, ft, t.name, t.dims, layer);
      out.push_back(std::move(t));
    }
  };
  auto matrix = [](std::string name, std::vector<int64_t> dims, float scale = 0.0f) {
    // Default std 1/sqrt(fan_in) keeps every projection's output at the input's scale.
    if (scale == 0.0f) scale = 1.0f / std::sqrt(static_cast<float>(dims[0]));
    return PlannedTensor{std::move(name), std::move(dims), DType::F32, Fill::kRandom, scale};
  };
  auto ones = [](std::string name, int64_t n) {
    return PlannedTensor{std::move(name), {n}, DType::F32, Fill::kOnes, 0.0f};
  };

  // Logits std ~2 from a unit-rms hidden state: peaked but not one-hot.
  const float s_head = 2.0f * s_d;
  std::vector<PlannedTensor> top;
  top.push_back(matrix("token_embd.weight", {D, p.n_vocab}, p.tied_embeddings ? s_head : 1.0f));
  top.push_back(ones("output_norm.weight", D));
  if (!p.tied_embeddings) top.push_back(matrix("output.weight", {D, p.n_vocab}, s_head));
  add_group(std::move(top), -1);

  // The MTP block (index n_layer) is a full-attention layer plus the nextn projections.
  for (int64_t i = 0; i < p.n_layer + p.n_nextn; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    std::vector<PlannedTensor> g;
    g.push_back(ones(b + "attn_norm.weight", D));
    const bool mtp = i >= p.n_layer;
    const bool full = mtp || !is_qwen35(p) || (i + 1) % p.full_attention_interval == 0;
    if (mtp) {
      g.push_back(matrix(b + "nextn.eh_proj.weight", {2 * D, D}));
      g.push_back(ones(b + "nextn.enorm.weight", D));
      g.push_back(ones(b + "nextn.hnorm.weight", D));
      g.push_back(ones(b + "nextn.shared_head_norm.weight", D));
    }
    if (is_qwen35(p)) {
      g.push_back(ones(b + "post_attention_norm.weight", D));
    } else {
      g.push_back(ones(b + "ffn_norm.weight", D));
    }
    if (full) {
      g.push_back(matrix(b + "attn_q.weight", {D, is_qwen35(p) ? 2 * q : q}));  // qwen35: q and gate
      g.push_back(matrix(b + "attn_k.weight", {D, kv}));
      g.push_back(matrix(b + "attn_v.weight", {D, kv}));
      g.push_back(matrix(b + "attn_output.weight", {q, D}));
      if (p.qkv_bias) {
        g.push_back(matrix(b + "attn_q.bias", {q}, 0.1f));
        g.push_back(matrix(b + "attn_k.bias", {kv}, 0.1f));
        g.push_back(matrix(b + "attn_v.bias", {kv}, 0.1f));
      } else {
        g.push_back(ones(b + "attn_q_norm.weight", p.head_dim));
        g.push_back(ones(b + "attn_k_norm.weight", p.head_dim));
      }
    } else {
      // Gated DeltaNet. ssm_a = -exp(A_log) and ssm_dt.bias get their own ranges (kSsmA,
      // kDtBias); conv taps std 1/sqrt(K) keep the conv output at unit scale.
      const int64_t nv = p.ssm_n_v, Cv = nv * p.ssm_d_state, C = 2 * p.ssm_n_k * p.ssm_d_state + Cv;
      g.push_back(matrix(b + "attn_qkv.weight", {D, C}));
      g.push_back(matrix(b + "attn_gate.weight", {D, Cv}));
      g.push_back(matrix(b + "ssm_beta.weight", {D, nv}));
      g.push_back(matrix(b + "ssm_alpha.weight", {D, nv}));
      g.push_back(PlannedTensor{b + "ssm_dt.bias", {nv}, DType::F32, Fill::kDtBias, 0.0f});
      g.push_back(PlannedTensor{b + "ssm_a", {nv}, DType::F32, Fill::kSsmA, 0.0f});
      g.push_back(matrix(b + "ssm_conv1d.weight", {p.ssm_conv_kernel, C},
                         1.0f / std::sqrt(static_cast<float>(p.ssm_conv_kernel))));
      g.push_back(ones(b + "ssm_norm.weight", p.ssm_d_state));
      g.push_back(matrix(b + "ssm_out.weight", {Cv, D}));
    }
    if (p.n_expert > 0) {
      const int64_t E = p.n_expert, Fe = p.n_ff_expert;
      // Router logits std ~2: decisive top-k, different experts for different tokens.
      g.push_back(matrix(b + "ffn_gate_inp.weight", {D, E}, 2.0f * s_d));
      g.push_back(matrix(b + "ffn_gate_exps.weight", {D, Fe, E}));
      g.push_back(matrix(b + "ffn_up_exps.weight", {D, Fe, E}));
      g.push_back(matrix(b + "ffn_down_exps.weight", {Fe, D, E}));
      if (p.n_ff_shared > 0) {
        const int64_t Fs = p.n_ff_shared;
        g.push_back(matrix(b + "ffn_gate_inp_shexp.weight", {D}));
        g.push_back(matrix(b + "ffn_gate_shexp.weight", {D, Fs}));
        g.push_back(matrix(b + "ffn_up_shexp.weight", {D, Fs}));
        g.push_back(matrix(b + "ffn_down_shexp.weight", {Fs, D}));
      }
    } else {
      g.push_back(matrix(b + "ffn_gate.weight", {D, p.n_ff}));
      g.push_back(matrix(b + "ffn_up.weight", {D, p.n_ff}));
      g.push_back(matrix(b + "ffn_down.weight", {p.n_ff, D}));
    }
    add_group(std::move(g), i);
  }
  return out;
}

namespace {

Entries model_metadata(const Preset& p, const FileType& ft, uint64_t seed) {
  // Keys and value types as llama.cpp's converter writes them (tools/fixtures/make_fixtures.py).
  const std::string a = p.arch + ".";
  auto u32 = [](int64_t v) { return gguf::Value(static_cast<uint32_t>(v)); };
  Entries e;
  e.reserve(40);
  e.emplace_back("general.architecture", gguf::Value(p.arch));
  e.emplace_back("general.type", gguf::Value("model"));
  e.emplace_back("general.name", gguf::Value(fmt::format("synth {} {} ({} layers, seed {}, random weights)",
                                                         p.name, ft.name, p.n_layer, seed)));
  e.emplace_back(a + "block_count", u32(p.n_layer + p.n_nextn));
  if (p.n_nextn > 0) e.emplace_back(a + "nextn_predict_layers", u32(p.n_nextn));
  e.emplace_back(a + "context_length", u32(p.n_ctx_train));
  e.emplace_back(a + "embedding_length", u32(p.n_embd));
  if (p.n_ff > 0) e.emplace_back(a + "feed_forward_length", u32(p.n_ff));
  e.emplace_back(a + "attention.head_count", u32(p.n_head));
  e.emplace_back(a + "attention.head_count_kv", u32(p.n_head_kv));
  if (!p.rope_sections.empty()) e.emplace_back(a + "rope.dimension_sections", gguf::Value(p.rope_sections));
  e.emplace_back(a + "rope.freq_base", gguf::Value(p.rope_freq_base));
  e.emplace_back(a + "attention.layer_norm_rms_epsilon", gguf::Value(p.rms_eps));
  if (p.n_expert > 0) {
    e.emplace_back(a + "expert_count", u32(p.n_expert));
    e.emplace_back(a + "expert_used_count", u32(p.n_expert_used));
  }
  if (p.arch != "qwen2") {
    e.emplace_back(a + "attention.key_length", u32(p.head_dim));
    e.emplace_back(a + "attention.value_length", u32(p.head_dim));
  }
  e.emplace_back("general.file_type", gguf::Value(ft.id));
  if (p.n_expert > 0) e.emplace_back(a + "expert_feed_forward_length", u32(p.n_ff_expert));
  if (p.n_ff_shared > 0) e.emplace_back(a + "expert_shared_feed_forward_length", u32(p.n_ff_shared));
  if (is_qwen35(p)) {
    e.emplace_back(a + "ssm.conv_kernel", u32(p.ssm_conv_kernel));
    e.emplace_back(a + "ssm.state_size", u32(p.ssm_d_state));
    e.emplace_back(a + "ssm.group_count", u32(p.ssm_n_k));
    e.emplace_back(a + "ssm.time_step_rank", u32(p.ssm_n_v));
    e.emplace_back(a + "ssm.inner_size", u32(p.ssm_n_v * p.ssm_d_state));
    e.emplace_back(a + "full_attention_interval", u32(p.full_attention_interval));
  }
  if (p.n_rot > 0) e.emplace_back(a + "rope.dimension_count", u32(p.n_rot));
  e.emplace_back("general.quantization_version", gguf::Value(uint32_t{2}));
  return e;
}

// Small tensors with a value rule of their own (F32, a handful of elements).
std::vector<float> special_values(const PlannedTensor& t, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(t.dims[0]));
  for (float& x : v) {
    switch (t.fill) {
      case Fill::kOnes: x = 1.0f; break;
      // A log-uniform in [0.5, 16] (HF initialises A ~ U(0, 16)); with dt_bias in [-4, -1]
      // the per-token decay exp(-A softplus(alpha + dt)) spans ~0.2 to ~0.99 over the heads.
      case Fill::kSsmA: x = -std::exp(std::log(0.5f) + rng.uniform() * std::log(32.0f)); break;
      case Fill::kDtBias: x = -4.0f + 3.0f * rng.uniform(); break;
      case Fill::kRandom: break;
    }
  }
  return v;
}

void write_tensor(gguf::Writer& w, const PlannedTensor& t, uint64_t seed, std::vector<uint8_t>& buf,
                  const std::function<void(uint64_t)>& wrote) {
  Rng rng(seed, t.name);
  uint64_t n = 1;
  for (int64_t d : t.dims) n *= static_cast<uint64_t>(d);
  if (t.fill != Fill::kRandom) {
    if (t.type != DType::F32) fail("synth: tensor '{}' must be F32", t.name);
    const std::vector<float> v = special_values(t, rng);
    w.write_tensor_data({reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)});
    wrote(v.size() * sizeof(float));
    return;
  }
  const DTypeInfo& info = dtype_info(t.type);
  if (is_quantized(t.type)) {
    const BlockMaker maker(t.type, t.scale);
    const uint64_t per_chunk = buf.size() / info.block_bytes;
    for (uint64_t left = n / info.block_elems; left > 0;) {
      const uint64_t k = std::min(left, per_chunk);
      maker.make(buf.data(), static_cast<int64_t>(k), rng);
      w.write_tensor_data({buf.data(), k * info.block_bytes});
      wrote(k * info.block_bytes);
      left -= k;
    }
    return;
  }
  // F32 / F16 / BF16: each element is a 12-bit index into the normal table, pre-scaled and
  // pre-converted to the element's bytes.
  const auto& normal = normal_table();
  std::array<uint32_t, 1 << kNormalBits> table{};
  for (size_t i = 0; i < table.size(); ++i) {
    const float x = normal[i] * t.scale;
    table[i] = t.type == DType::F32 ? f32_to_bits(x) : t.type == DType::F16 ? f32_to_f16(x) : f32_to_bf16(x);
  }
  const size_t width = info.block_bytes;  // 4 or 2
  if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16) {
    fail("synth: cannot fill tensor '{}' of type {}", t.name, info.name);
  }
  const uint64_t per_chunk = buf.size() / width / 5 * 5;
  constexpr uint64_t kMask = (1u << kNormalBits) - 1;
  for (uint64_t left = n; left > 0;) {
    const uint64_t k = std::min(left, per_chunk);
    uint8_t* dst = buf.data();
    for (uint64_t i = 0; i < k;) {
      uint64_t r = rng.next();  // five 12-bit indices per draw
      for (int j = 0; j < 5 && i < k; ++j, ++i, r >>= kNormalBits) {
        std::memcpy(dst + i * width, &table[r & kMask], width);  // little-endian: low bytes
      }
    }
    w.write_tensor_data({buf.data(), k * width});
    wrote(k * width);
    left -= k;
  }
}

}  // namespace

Summary write(const std::filesystem::path& out, const Options& o) {
  const Preset& p = o.preset;
  const FileType& ft = find_file_type(o.type);
  const std::vector<PlannedTensor> plan = plan_tensors(p, ft);
  std::error_code ec;
  if (!o.vocab_from.empty() && std::filesystem::equivalent(o.vocab_from, out, ec)) {
    fail("the output '{}' is the --vocab-from file", out.string());
  }
  Entries vocab = o.vocab_from.empty() ? synthetic_vocab(p) : vocab_from(o.vocab_from, p);

  Summary summary;
  summary.n_tensors = plan.size();
  summary.n_vocab_tokens = p.n_vocab;
  gguf::Writer w(out);
  for (auto& [key, value] : model_metadata(p, ft, o.seed)) w.add(std::move(key), std::move(value));
  for (auto& [key, value] : vocab) w.add(std::move(key), std::move(value));
  uint64_t total = 0, done = 0, last_report = 0;
  for (const PlannedTensor& t : plan) {
    total += w.add_tensor(t.name, t.type, t.dims);
    ++summary.types[std::string(dtype_name(t.type))];
  }
  auto wrote = [&](uint64_t n) {
    done += n;
    if (o.progress && (done - last_report >= (64u << 20) || done == total)) {
      last_report = done;
      o.progress(done, total);
    }
  };
  bool created = false;
  try {
    w.write_header();
    created = std::filesystem::is_regular_file(out, ec);  // never remove /dev/null & co.
    std::vector<uint8_t> buf(4u << 20);
    for (const PlannedTensor& t : plan) write_tensor(w, t, o.seed, buf, wrote);
    w.finish();
  } catch (...) {
    if (created) std::filesystem::remove(out, ec);  // no half-written model left behind
    throw;
  }
  summary.file_bytes = created ? std::filesystem::file_size(out) : total;
  return summary;
}

}  // namespace tandem::model::synth
