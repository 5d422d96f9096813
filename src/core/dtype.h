// Element types as GGUF stores them: the ggml type ids, names and block geometry.
// Every layer (file reader, quant kernels, backends) speaks of tensors in these terms.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tandem {

// Values are the on-disk ggml type ids; never renumber.
enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
  IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
  IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41,
};

struct DTypeInfo {
  DType type;
  std::string_view name;   // as llama.cpp and gguf-py print it, e.g. "Q4_K"
  uint32_t block_elems;    // elements per block (1 for plain types)
  uint32_t block_bytes;    // bytes per block
};

// Geometry of a known type id; std::nullopt for ids this build does not know.
std::optional<DTypeInfo> dtype_info(uint32_t type_id);
// Same, for a DType value (always known).
const DTypeInfo& dtype_info(DType type);
std::string_view dtype_name(DType type);
// Parses "q4_k" / "Q4_K" style names; std::nullopt when unknown.
std::optional<DType> dtype_from_name(std::string_view name);

}  // namespace tandem
