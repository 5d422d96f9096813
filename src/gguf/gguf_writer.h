// Streaming GGUF (version 3) writer: declare metadata and tensors, write the header, then
// stream each tensor's bytes in declaration order (in as many pieces as convenient).
// Nothing is buffered beyond the OS's file buffer, so writing a 20 GB model needs no
// 20 GB of memory.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gguf/gguf_value.h"

namespace tandem::gguf {

class Writer {
 public:
  explicit Writer(std::filesystem::path path, uint32_t alignment = 32);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Metadata entries are written in the order added; a duplicate key is an error.
  void add(std::string key, Value value);
  // Declares a tensor (dims in ggml order, dims[0] contiguous). Returns its byte size.
  uint64_t add_tensor(std::string name, DType type, std::vector<int64_t> dims);

  // Writes magic, counts, metadata and tensor infos, then padding to the data section.
  void write_header();
  // Appends bytes to the current tensor; moves to the next one when it is complete.
  void write_tensor_data(std::span<const uint8_t> bytes);
  // Checks every declared byte was written, flushes and closes. Must be called.
  void finish();

 private:
  struct Declared {
    std::string name;
    DType type;
    std::vector<int64_t> dims;
    uint64_t offset;
    uint64_t n_bytes;
  };
  void write_raw(const void* data, size_t n);
  void write_string(const std::string& s);
  void write_value(const Value& value);
  void write_array(const Array& array);
  void pad_to_alignment();

  std::filesystem::path path_;
  uint32_t alignment_;
  std::FILE* out_ = nullptr;
  uint64_t written_ = 0;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::set<std::string, std::less<>> keys_;
  std::vector<Declared> tensors_;
  std::set<std::string, std::less<>> tensor_names_;
  uint64_t data_size_ = 0;
  bool header_written_ = false;
  size_t current_tensor_ = 0;
  uint64_t current_written_ = 0;
};

}  // namespace tandem::gguf
