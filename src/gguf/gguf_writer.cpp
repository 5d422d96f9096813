#include "gguf/gguf_writer.h"

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "gguf/gguf_file.h"

namespace tandem::gguf {

Writer::Writer(std::filesystem::path path, uint32_t alignment)
    : path_(std::move(path)), alignment_(alignment) {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
    fail("gguf writer '{}': alignment {} is not a power of two", path_.string(), alignment_);
  }
  if (alignment_ != kDefaultAlignment) add("general.alignment", Value(alignment_));
}

Writer::~Writer() {
  if (out_ != nullptr) std::fclose(out_);  // finish() was not reached: leave the partial file
}

void Writer::add(std::string key, Value value) {
  if (header_written_) fail("gguf writer '{}': metadata '{}' added after the header", path_.string(), key);
  if (key.empty()) fail("gguf writer '{}': empty metadata key", path_.string());
  if (!keys_.insert(key).second) fail("gguf writer '{}': duplicate metadata key '{}'", path_.string(), key);
  metadata_.emplace_back(std::move(key), std::move(value));
}

uint64_t Writer::add_tensor(std::string name, DType type, std::vector<int64_t> dims) {
  if (header_written_) fail("gguf writer '{}': tensor '{}' added after the header", path_.string(), name);
  if (name.empty()) fail("gguf writer '{}': empty tensor name", path_.string());
  if (dims.empty() || dims.size() > kMaxDims) {
    fail("gguf writer '{}': tensor '{}' has {} dimensions (must be 1 to {})", path_.string(), name,
         dims.size(), kMaxDims);
  }
  const DTypeInfo& info = dtype_info(type);
  uint64_t n_elements = 1;
  for (int64_t d : dims) {
    if (d <= 0) fail("gguf writer '{}': tensor '{}' has dimension {}", path_.string(), name, d);
    n_elements *= static_cast<uint64_t>(d);
  }
  if (dims[0] % info.block_elems != 0) {
    fail("gguf writer '{}': tensor '{}' row length {} is not a multiple of the {} block size {}",
         path_.string(), name, dims[0], info.name, info.block_elems);
  }
  if (!tensor_names_.insert(name).second) {
    fail("gguf writer '{}': duplicate tensor name '{}'", path_.string(), name);
  }
  const uint64_t n_bytes = n_elements / info.block_elems * info.block_bytes;
  const uint64_t offset = data_size_;
  data_size_ += (n_bytes + alignment_ - 1) / alignment_ * alignment_;
  tensors_.push_back(Declared{std::move(name), type, std::move(dims), offset, n_bytes});
  return n_bytes;
}

void Writer::write_raw(const void* data, size_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, out_) != n) {
    fail("gguf writer '{}': write failed at byte {}: {}", path_.string(), written_,
         std::strerror(errno));
  }
  written_ += n;
}

void Writer::write_string(const std::string& s) {
  const uint64_t length = s.size();
  write_raw(&length, sizeof length);
  write_raw(s.data(), s.size());
}

void Writer::write_array(const Array& array) {
  const uint32_t type = static_cast<uint32_t>(array.element_type());
  const uint64_t count = array.size();
  write_raw(&type, sizeof type);
  write_raw(&count, sizeof count);
  std::visit(
      [this](const auto& items) {
        using T = typename std::decay_t<decltype(items)>::value_type;
        if constexpr (std::is_same_v<T, bool>) {
          for (bool b : items) {
            const uint8_t byte = b ? 1 : 0;
            write_raw(&byte, 1);
          }
        } else if constexpr (std::is_same_v<T, std::string>) {
          for (const std::string& s : items) write_string(s);
        } else if constexpr (std::is_same_v<T, Array>) {
          for (const Array& a : items) write_array(a);
        } else {
          write_raw(items.data(), items.size() * sizeof(T));
        }
      },
      array.items);
}

void Writer::write_value(const Value& value) {
  const uint32_t type = static_cast<uint32_t>(value.type());
  write_raw(&type, sizeof type);
  std::visit(
      [this](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          const uint8_t byte = v ? 1 : 0;
          write_raw(&byte, 1);
        } else if constexpr (std::is_same_v<T, std::string>) {
          write_string(v);
        } else if constexpr (std::is_same_v<T, Array>) {
          write_array(v);
        } else {
          write_raw(&v, sizeof v);
        }
      },
      value.storage());
}

void Writer::pad_to_alignment() {
  static constexpr uint8_t kZeros[256] = {};
  uint64_t pad = (alignment_ - written_ % alignment_) % alignment_;
  while (pad > 0) {
    const size_t n = std::min<uint64_t>(pad, sizeof kZeros);
    write_raw(kZeros, n);
    pad -= n;
  }
}

void Writer::write_header() {
  if (header_written_) fail("gguf writer '{}': header written twice", path_.string());
  out_ = std::fopen(path_.c_str(), "wb");
  if (out_ == nullptr) fail("cannot create '{}': {}", path_.string(), std::strerror(errno));
  header_written_ = true;
  const uint32_t magic = kMagic, version = 3;
  const uint64_t n_tensors = tensors_.size(), n_kv = metadata_.size();
  write_raw(&magic, sizeof magic);
  write_raw(&version, sizeof version);
  write_raw(&n_tensors, sizeof n_tensors);
  write_raw(&n_kv, sizeof n_kv);
  for (const auto& [key, value] : metadata_) {
    write_string(key);
    write_value(value);
  }
  for (const Declared& t : tensors_) {
    write_string(t.name);
    const uint32_t n_dims = static_cast<uint32_t>(t.dims.size());
    write_raw(&n_dims, sizeof n_dims);
    for (int64_t d : t.dims) {
      const uint64_t dim = static_cast<uint64_t>(d);
      write_raw(&dim, sizeof dim);
    }
    const uint32_t type = static_cast<uint32_t>(t.type);
    write_raw(&type, sizeof type);
    write_raw(&t.offset, sizeof t.offset);
  }
  pad_to_alignment();
}

void Writer::write_tensor_data(std::span<const uint8_t> bytes) {
  if (!header_written_) fail("gguf writer '{}': tensor data before the header", path_.string());
  while (!bytes.empty()) {
    if (current_tensor_ >= tensors_.size()) {
      fail("gguf writer '{}': {} bytes of tensor data beyond the declared tensors",
           path_.string(), bytes.size());
    }
    const Declared& t = tensors_[current_tensor_];
    const uint64_t n = std::min<uint64_t>(bytes.size(), t.n_bytes - current_written_);
    write_raw(bytes.data(), n);
    bytes = bytes.subspan(n);
    current_written_ += n;
    if (current_written_ == t.n_bytes) {
      pad_to_alignment();
      ++current_tensor_;
      current_written_ = 0;
    }
  }
}

void Writer::finish() {
  if (!header_written_) write_header();
  if (current_tensor_ != tensors_.size()) {
    fail("gguf writer '{}': tensor '{}' is incomplete ({} of {} bytes written)", path_.string(),
         tensors_[current_tensor_].name, current_written_, tensors_[current_tensor_].n_bytes);
  }
  std::FILE* out = out_;
  out_ = nullptr;
  if (std::fclose(out) != 0) {
    fail("gguf writer '{}': closing failed: {}", path_.string(), std::strerror(errno));
  }
}

}  // namespace tandem::gguf
