// Finds a model's tensors by llama.cpp name, checks shape and type, and hands out
// views into the mapped file. Every problem is an error naming the tensor.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "gguf/gguf_model_files.h"

namespace tandem::model {

class WeightLoader {
 public:
  explicit WeightLoader(const gguf::ModelFiles& files) : files_(files) {}

  // The tensor `name` with exactly this shape (ggml order); its type must be computable.
  Tensor require(const std::string& name, std::vector<int64_t> shape);
  // Same, or an invalid Tensor (data == nullptr) when the file does not have it.
  Tensor optional(const std::string& name, std::vector<int64_t> shape);
  // Small 1-D tensors (norm weights, biases) decoded to f32 once at load.
  std::vector<float> require_f32(const std::string& name, int64_t n);
  std::vector<float> optional_f32(const std::string& name, int64_t n);
  // A vector of n values that converters store either as {n} or as {n, 1}.
  std::vector<float> require_vector_f32(const std::string& name, int64_t n);
  // A small tensor of any shape decoded to f32 (e.g. conv taps {K, C} -> [C][K]).
  std::vector<float> require_small_f32(const std::string& name, std::vector<int64_t> shape);
  // Tensors in the file that nothing asked for (reported to the user, not fatal).
  std::vector<std::string> unused() const;

 private:
  const gguf::ModelFiles& files_;
  std::set<std::string> used_;
};

}  // namespace tandem::model
