// GGUF metadata values: the 13 on-disk value types, scalars and (nested) arrays.
// Values own their data (metadata is small next to the weights, which stay in the mmap).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tandem::gguf {

// On-disk value type ids. The variant alternatives below follow this exact order, so
// `variant.index() == static_cast<size_t>(type)`.
enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
constexpr uint32_t kValueTypeCount = 13;

// "uint32", "string", ... as in error messages and JSON output.
std::string_view value_type_name(ValueType type);

struct Array;
// One vector per element type; nested arrays are vectors of Array.
using ArrayItems = std::variant<std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>,
                                std::vector<int16_t>, std::vector<uint32_t>, std::vector<int32_t>,
                                std::vector<float>, std::vector<bool>, std::vector<std::string>,
                                std::vector<Array>, std::vector<uint64_t>, std::vector<int64_t>,
                                std::vector<double>>;

struct Array {
  ArrayItems items;
  ValueType element_type() const { return static_cast<ValueType>(items.index()); }
  size_t size() const;
  bool operator==(const Array&) const = default;
};

class Value {
 public:
  using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, Array, uint64_t, int64_t, double>;

  Value() = default;
  template <typename T>
  explicit Value(T v) : storage_(std::move(v)) {}
  Value(const char* s) : storage_(std::string(s)) {}  // NOLINT: convenient for writers
  template <typename T>
  explicit Value(std::vector<T> items) : storage_(Array{ArrayItems(std::move(items))}) {}

  ValueType type() const { return static_cast<ValueType>(storage_.index()); }
  const Storage& storage() const { return storage_; }

  // Exact-type access: nullptr when the stored type differs.
  template <typename T>
  const T* get_if() const { return std::get_if<T>(&storage_); }
  const Array* array() const { return std::get_if<Array>(&storage_); }

  // Lenient numeric access: any integer type whose value fits; false otherwise.
  bool to_u64(uint64_t& out) const;
  bool to_i64(int64_t& out) const;
  // Any numeric type (integers and floats) as double; false for bool/string/array.
  bool to_f64(double& out) const;

  bool operator==(const Value&) const = default;

 private:
  Storage storage_;
};

// The ValueType that a C++ type is stored as (for error messages and the writer).
template <typename T> constexpr ValueType value_type_of();
template <> constexpr ValueType value_type_of<uint8_t>() { return ValueType::U8; }
template <> constexpr ValueType value_type_of<int8_t>() { return ValueType::I8; }
template <> constexpr ValueType value_type_of<uint16_t>() { return ValueType::U16; }
template <> constexpr ValueType value_type_of<int16_t>() { return ValueType::I16; }
template <> constexpr ValueType value_type_of<uint32_t>() { return ValueType::U32; }
template <> constexpr ValueType value_type_of<int32_t>() { return ValueType::I32; }
template <> constexpr ValueType value_type_of<float>() { return ValueType::F32; }
template <> constexpr ValueType value_type_of<bool>() { return ValueType::Bool; }
template <> constexpr ValueType value_type_of<std::string>() { return ValueType::String; }
template <> constexpr ValueType value_type_of<Array>() { return ValueType::Array; }
template <> constexpr ValueType value_type_of<uint64_t>() { return ValueType::U64; }
template <> constexpr ValueType value_type_of<int64_t>() { return ValueType::I64; }
template <> constexpr ValueType value_type_of<double>() { return ValueType::F64; }

// Short human description, e.g. "uint32", "array[string; 151936]".
std::string describe_type(const Value& value);

}  // namespace tandem::gguf
