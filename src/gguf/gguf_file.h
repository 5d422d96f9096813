// One GGUF file (format versions 2 and 3): validated header, metadata and tensor table,
// with tensor data used in place from a read-only mmap. Every structural problem is
// reported as a tandem::Error naming the file, the byte offset and the reason.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <map>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "gguf/gguf_value.h"

namespace tandem::gguf {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;          // ggml tensors have at most 4 dimensions
constexpr uint32_t kMaxArrayNesting = 8;  // deeper nesting is rejected (stack safety)

struct TensorInfo {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous row length
  uint64_t offset = 0;        // from the start of the data section, as stored
  uint64_t file_offset = 0;   // absolute byte offset of the data in the file
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  uint64_t info_offset = 0;   // where this tensor's header entry starts (for messages)
  const uint8_t* data = nullptr;  // points into the mapping; valid while the file lives

  int64_t rows() const;  // product of dims[1..]
};

struct MetadataEntry {
  std::string key;
  Value value;
  uint64_t offset = 0;  // where the entry starts in the file
};

class File {
 public:
  // Maps and parses `path`.
  static File open(const std::filesystem::path& path);
  // Parses bytes already in memory; `name` appears in errors. `owner` keeps them alive.
  static File parse(std::span<const uint8_t> bytes, std::string name,
                    std::shared_ptr<const MappedFile> owner = nullptr);

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return bytes_.size(); }
  std::span<const uint8_t> bytes() const { return bytes_; }

  const std::vector<MetadataEntry>& metadata() const { return metadata_; }
  const Value* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }

  // Typed access with an exact stored type; a missing key or another type is an error
  // naming the key, e.g. get<uint32_t>("qwen35moe.block_count").
  template <typename T>
  const T& get(std::string_view key) const {
    const Value& value = require(key);
    if (const T* v = value.get_if<T>()) return *v;
    type_mismatch(key, value, value_type_name(value_type_of<T>()));
  }
  // Like get<T>, but returns `fallback` when the key is absent (a wrong type still fails).
  template <typename T>
  T get_or(std::string_view key, T fallback) const {
    return find(key) ? get<T>(key) : fallback;
  }
  // Typed array access: get_array<std::string>("tokenizer.ggml.tokens").
  template <typename T>
  const std::vector<T>& get_array(std::string_view key) const {
    const Value& value = require(key);
    if (const Array* array = value.array()) {
      if (const auto* items = std::get_if<std::vector<T>>(&array->items)) return *items;
    }
    type_mismatch(key, value, fmt::format("array[{}]", value_type_name(value_type_of<T>())));
  }
  // Any unsigned-representable integer type (files differ in which width they use).
  uint64_t get_uint(std::string_view key) const;
  // Any numeric type as a float (e.g. rope.freq_base stored as float32 or float64).
  double get_float(std::string_view key) const;
  std::string_view architecture() const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  const Value& require(std::string_view key) const;
  [[noreturn]] void type_mismatch(std::string_view key, const Value& value,
                                  std::string_view expected) const;
  friend class Parser;

  std::string name_;
  std::shared_ptr<const MappedFile> owner_;
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<MetadataEntry> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace tandem::gguf
