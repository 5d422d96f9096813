// Which files of a Hugging Face-style model repository make up one quantization of a
// GGUF model. Pure logic over file names (no network), so it is unit-tested on its own.
//
//   "Qwen/Qwen3-8B-GGUF:Q4_K_M"  ->  repo "Qwen/Qwen3-8B-GGUF", quant "Q4_K_M"
//   Qwen3-8B-Q4_K_M.gguf                       one file
//   Q8_0/Qwen3-8B-Q8_0-00001-of-00002.gguf ..  a split model: every part belongs to it
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem::hub {

inline constexpr const char* kDefaultQuant = "Q4_K_M";

struct ModelRef {
  std::string repo;   // "owner/name"
  std::string quant;  // as the user wrote it; empty: the default (Q4_K_M)
};

// Parses "owner/name[:QUANT]"; a clear error names what is wrong with the text.
ModelRef parse_model_ref(const std::string& text);

struct RepoFile {
  std::string path;    // inside the repository
  uint64_t size = 0;
  std::string sha256;  // the LFS object id (lower-case hex); empty when the hub gave none
};

// The quantization tag a GGUF file name carries ("Q4_K_M", "IQ4_XS", "BF16", ...), upper
// case; empty when it carries none. The tag is the last one in the path.
std::string quant_of(const std::string& path);

// The files of `quant` (case-insensitive; empty: Q4_K_M, or the only quant there is),
// every part of a split model in part order. Projector files (mmproj) are never models.
// No match: an error listing the quants the repository has.
std::vector<RepoFile> pick_quant(const std::vector<RepoFile>& files, const std::string& repo,
                                 const std::string& quant);

// The distinct quants among `files`' GGUF model files, sorted.
std::vector<std::string> quants_in(const std::vector<RepoFile>& files);

}  // namespace tandem::hub
