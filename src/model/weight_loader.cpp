#include "model/weight_loader.h"

#include "core/error.h"
#include "quant/tensor_rows.h"

namespace tandem::model {
namespace {

std::string shape_text(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

}  // namespace

Tensor WeightLoader::optional(const std::string& name, std::vector<int64_t> shape) {
  const gguf::TensorInfo* info = files_.find_tensor(name);
  if (info == nullptr) return {};
  if (info->dims != shape) {
    fail("{}: tensor '{}' has shape {}, expected {}", files_.primary().name(), name,
         shape_text(info->dims), shape_text(shape));
  }
  quant::require_dequantizable(*info);
  used_.insert(name);
  Tensor t;
  t.name = name;
  t.type = info->type;
  t.n_dims = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.ne[i] = shape[i];
  t.data = info->data;
  return t;
}

Tensor WeightLoader::require(const std::string& name, std::vector<int64_t> shape) {
  Tensor t = optional(name, shape);
  if (!t.valid()) fail("{}: required tensor '{}' is missing", files_.primary().name(), name);
  return t;
}

std::vector<float> WeightLoader::optional_f32(const std::string& name, int64_t n) {
  const gguf::TensorInfo* info = files_.find_tensor(name);
  if (info == nullptr) return {};
  require(name, {n});
  std::vector<float> out(static_cast<size_t>(n));
  quant::dequantize_rows(*info, 0, 1, out.data());
  return out;
}

std::vector<float> WeightLoader::require_f32(const std::string& name, int64_t n) {
  if (files_.find_tensor(name) == nullptr) {
    fail("{}: required tensor '{}' is missing", files_.primary().name(), name);
  }
  return optional_f32(name, n);
}

std::vector<float> WeightLoader::require_vector_f32(const std::string& name, int64_t n) {
  const gguf::TensorInfo* info = files_.find_tensor(name);
  if (info != nullptr && info->dims == std::vector<int64_t>{n, 1}) return require_small_f32(name, {n, 1});
  return require_f32(name, n);
}

std::vector<float> WeightLoader::require_small_f32(const std::string& name, std::vector<int64_t> shape) {
  const Tensor t = require(name, shape);
  std::vector<float> out(static_cast<size_t>(t.elements()));
  quant::dequantize_rows(*files_.find_tensor(name), 0, t.rows(), out.data());
  return out;
}

std::vector<std::string> WeightLoader::unused() const {
  std::vector<std::string> names;
  for (const gguf::TensorInfo* t : files_.tensors()) {
    if (used_.count(t->name) == 0) names.push_back(t->name);
  }
  return names;
}

}  // namespace tandem::model
