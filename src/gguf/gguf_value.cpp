#include "gguf/gguf_value.h"

#include <array>
#include <limits>

#include <fmt/format.h>

namespace tandem::gguf {

std::string_view value_type_name(ValueType type) {
  static constexpr std::array<std::string_view, kValueTypeCount> kNames = {
      "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
      "bool", "string", "array", "uint64", "int64", "float64"};
  const auto index = static_cast<uint32_t>(type);
  return index < kNames.size() ? kNames[index] : "unknown";
}

size_t Array::size() const {
  return std::visit([](const auto& v) { return v.size(); }, items);
}

bool Value::to_u64(uint64_t& out) const {
  return std::visit(
      [&out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_signed_v<T>) {
            if (v < 0) return false;
          }
          out = static_cast<uint64_t>(v);
          return true;
        } else {
          return false;
        }
      },
      storage_);
}

bool Value::to_i64(int64_t& out) const {
  return std::visit(
      [&out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_same_v<T, uint64_t>) {
            if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
          }
          out = static_cast<int64_t>(v);
          return true;
        } else {
          return false;
        }
      },
      storage_);
}

bool Value::to_f64(double& out) const {
  return std::visit(
      [&out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
          out = static_cast<double>(v);
          return true;
        } else {
          return false;
        }
      },
      storage_);
}

std::string describe_type(const Value& value) {
  const Array* array = value.array();
  if (array == nullptr) return std::string(value_type_name(value.type()));
  return fmt::format("array[{}; {}]", value_type_name(array->element_type()), array->size());
}

}  // namespace tandem::gguf
