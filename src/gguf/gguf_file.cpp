#include "gguf/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace tandem::gguf {

// Reads the header front to back. Each read checks the bytes left first, so a count or a
// length that the file cannot hold is rejected before anything is allocated for it.
class Parser {
 public:
  Parser(File& file) : file_(file), bytes_(file.bytes_) {}

  void run() {
    parse_preamble();
    parse_metadata();
    apply_alignment();
    parse_tensor_infos();
    place_tensors();
  }

 private:
  [[noreturn]] void error_at(uint64_t offset, const std::string& message) const {
    fail("{}: byte {}: {}", file_.name_, offset, message);
  }

  uint64_t left() const { return bytes_.size() - pos_; }

  void need(uint64_t n, std::string_view what) const {
    if (n > left()) {
      error_at(pos_, fmt::format("file ends while reading {}: need {} bytes, {} left", what, n,
                                 left()));
    }
  }

  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));  // GGUF is little-endian, as we are
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(std::string_view what) {
    const uint64_t at = pos_;
    const uint64_t length = read<uint64_t>(what);
    if (length > left()) {
      error_at(at, fmt::format("{}: string length {} exceeds the {} bytes left in the file", what,
                               length, left()));
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), length);
    pos_ += length;
    return s;
  }

  ValueType read_value_type(std::string_view what) {
    const uint64_t at = pos_;
    const uint32_t id = read<uint32_t>(what);
    if (id >= kValueTypeCount) {
      error_at(at, fmt::format("{}: unknown value type id {}", what, id));
    }
    return static_cast<ValueType>(id);
  }

  // Smallest encoded size of one value of `type`, used to bound counts by the file size.
  static uint64_t min_encoded_size(ValueType type) {
    switch (type) {
      case ValueType::U8: case ValueType::I8: case ValueType::Bool: return 1;
      case ValueType::U16: case ValueType::I16: return 2;
      case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
      case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
      case ValueType::String: return 8;   // the length
      case ValueType::Array: return 12;   // element type + count
    }
    return 1;
  }

  bool read_bool(std::string_view what) {
    const uint64_t at = pos_;
    const uint8_t b = read<uint8_t>(what);
    if (b > 1) error_at(at, fmt::format("{}: bool byte is {}, not 0 or 1", what, b));
    return b == 1;
  }

  // Reserve no more than this up front: a hostile count must not become a huge allocation
  // before the bytes behind it have been seen.
  static uint64_t capped(uint64_t count) { return std::min<uint64_t>(count, 1u << 16); }
  // Arrays inside arrays reserve nothing: each inner count is bounded only by the bytes
  // left, so reserving for every one of them would cost memory quadratic in the file size.
  static uint64_t reserve_for(uint64_t count, uint32_t depth) { return depth == 0 ? capped(count) : 0; }

  template <typename T>
  std::vector<T> read_pod_array(uint64_t count, std::string_view what) {
    need(count * sizeof(T), what);  // count is already bounded by the bytes left
    std::vector<T> items(count);
    if (count > 0) std::memcpy(items.data(), bytes_.data() + pos_, count * sizeof(T));
    pos_ += count * sizeof(T);
    return items;
  }

  Array read_array(std::string_view what, uint32_t depth) {
    const uint64_t at = pos_;
    if (depth >= kMaxArrayNesting) {
      error_at(at, fmt::format("{}: arrays nested deeper than {}", what, kMaxArrayNesting));
    }
    const ValueType element = read_value_type(what);
    const uint64_t count_at = pos_;
    const uint64_t count = read<uint64_t>(what);
    if (count > left() / min_encoded_size(element)) {
      error_at(count_at, fmt::format("{}: array of {} {} values cannot fit in the {} bytes left",
                                     what, count, value_type_name(element), left()));
    }
    Array array;
    switch (element) {
      case ValueType::U8: array.items = read_pod_array<uint8_t>(count, what); break;
      case ValueType::I8: array.items = read_pod_array<int8_t>(count, what); break;
      case ValueType::U16: array.items = read_pod_array<uint16_t>(count, what); break;
      case ValueType::I16: array.items = read_pod_array<int16_t>(count, what); break;
      case ValueType::U32: array.items = read_pod_array<uint32_t>(count, what); break;
      case ValueType::I32: array.items = read_pod_array<int32_t>(count, what); break;
      case ValueType::F32: array.items = read_pod_array<float>(count, what); break;
      case ValueType::U64: array.items = read_pod_array<uint64_t>(count, what); break;
      case ValueType::I64: array.items = read_pod_array<int64_t>(count, what); break;
      case ValueType::F64: array.items = read_pod_array<double>(count, what); break;
      case ValueType::Bool: {
        std::vector<bool> items;
        items.reserve(reserve_for(count, depth));
        for (uint64_t i = 0; i < count; ++i) items.push_back(read_bool(what));
        array.items = std::move(items);
        break;
      }
      case ValueType::String: {
        std::vector<std::string> items;
        items.reserve(reserve_for(count, depth));
        for (uint64_t i = 0; i < count; ++i) items.push_back(read_string(what));
        array.items = std::move(items);
        break;
      }
      case ValueType::Array: {
        std::vector<Array> items;
        items.reserve(reserve_for(count, depth));
        for (uint64_t i = 0; i < count; ++i) items.push_back(read_array(what, depth + 1));
        array.items = std::move(items);
        break;
      }
    }
    return array;
  }

  Value read_value(ValueType type, std::string_view what) {
    switch (type) {
      case ValueType::U8: return Value(read<uint8_t>(what));
      case ValueType::I8: return Value(read<int8_t>(what));
      case ValueType::U16: return Value(read<uint16_t>(what));
      case ValueType::I16: return Value(read<int16_t>(what));
      case ValueType::U32: return Value(read<uint32_t>(what));
      case ValueType::I32: return Value(read<int32_t>(what));
      case ValueType::F32: return Value(read<float>(what));
      case ValueType::Bool: return Value(read_bool(what));
      case ValueType::String: return Value(read_string(what));
      case ValueType::Array: return Value(read_array(what, 0));
      case ValueType::U64: return Value(read<uint64_t>(what));
      case ValueType::I64: return Value(read<int64_t>(what));
      case ValueType::F64: return Value(read<double>(what));
    }
    error_at(pos_, "unreachable value type");
  }

  void parse_preamble() {
    const uint32_t magic = read<uint32_t>("the magic number");
    if (magic != kMagic) {
      error_at(0, fmt::format("not a GGUF file (magic is 0x{:08x}, expected 0x{:08x} \"GGUF\")",
                              magic, kMagic));
    }
    const uint32_t version = read<uint32_t>("the format version");
    if (version == 0x02000000u || version == 0x03000000u) {
      error_at(4, "big-endian GGUF files are not supported");
    }
    if (version == 1) error_at(4, "GGUF version 1 (pre-2023 format) is not supported");
    if (version != 2 && version != 3) {
      error_at(4, fmt::format("unsupported GGUF version {} (supported: 2, 3)", version));
    }
    file_.version_ = version;
    tensor_count_at_ = pos_;
    tensor_count_ = read<uint64_t>("the tensor count");
    const uint64_t kv_count_at = pos_;
    kv_count_ = read<uint64_t>("the metadata count");
    // A metadata entry takes at least 13 bytes (key length, type, 1-byte value), a tensor
    // info at least 24 (name length, dim count, type, offset): bound both by the file size.
    if (kv_count_ > left() / 13) {
      error_at(kv_count_at, fmt::format("metadata count {} cannot fit in the {} bytes left",
                                        kv_count_, left()));
    }
    if (tensor_count_ > left() / 24) {
      error_at(tensor_count_at_, fmt::format("tensor count {} cannot fit in the {} bytes left",
                                             tensor_count_, left()));
    }
  }

  void parse_metadata() {
    file_.metadata_.reserve(capped(kv_count_));
    for (uint64_t i = 0; i < kv_count_; ++i) {
      const uint64_t at = pos_;
      std::string key = read_string(fmt::format("the key of metadata entry {}", i));
      if (key.empty()) error_at(at, fmt::format("metadata entry {} has an empty key", i));
      if (file_.metadata_index_.count(key) != 0) {
        error_at(at, fmt::format("duplicate metadata key '{}'", key));
      }
      const std::string what = fmt::format("metadata '{}'", key);
      const ValueType type = read_value_type(what);
      Value value = read_value(type, what);
      file_.metadata_index_.emplace(key, file_.metadata_.size());
      file_.metadata_.push_back(MetadataEntry{std::move(key), std::move(value), at});
    }
  }

  void apply_alignment() {
    const Value* value = file_.find("general.alignment");
    if (value == nullptr) return;
    const MetadataEntry& entry = file_.metadata_[file_.metadata_index_.find("general.alignment")->second];
    const uint32_t* alignment = value->get_if<uint32_t>();
    if (alignment == nullptr) {
      error_at(entry.offset, fmt::format("general.alignment must be uint32, found {}",
                                         describe_type(*value)));
    }
    if (*alignment == 0 || (*alignment & (*alignment - 1)) != 0) {
      error_at(entry.offset,
               fmt::format("general.alignment is {}, not a power of two", *alignment));
    }
    file_.alignment_ = *alignment;
  }

  void parse_tensor_infos() {
    file_.tensors_.reserve(capped(tensor_count_));
    for (uint64_t i = 0; i < tensor_count_; ++i) {
      TensorInfo info;
      info.info_offset = pos_;
      info.name = read_string(fmt::format("the name of tensor {}", i));
      if (info.name.empty()) error_at(info.info_offset, fmt::format("tensor {} has an empty name", i));
      if (file_.tensor_index_.count(info.name) != 0) {
        error_at(info.info_offset, fmt::format("duplicate tensor name '{}'", info.name));
      }
      const std::string what = fmt::format("tensor '{}'", info.name);
      const uint64_t dims_at = pos_;
      const uint32_t n_dims = read<uint32_t>(what);
      if (n_dims == 0 || n_dims > kMaxDims) {
        error_at(dims_at, fmt::format("{}: {} dimensions (must be 1 to {})", what, n_dims, kMaxDims));
      }
      uint64_t n_elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        const uint64_t dim_at = pos_;
        const uint64_t dim = read<uint64_t>(what);
        if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          error_at(dim_at, fmt::format("{}: dimension {} is {}", what, d, dim));
        }
        if (n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim) {
          error_at(dim_at, fmt::format("{}: element count overflows (dimension {} is {})", what,
                                       d, dim));
        }
        n_elements *= dim;
        info.dims.push_back(static_cast<int64_t>(dim));
      }
      const uint64_t type_at = pos_;
      const uint32_t type_id = read<uint32_t>(what);
      const auto type = dtype_info(type_id);
      if (!type) error_at(type_at, fmt::format("{}: unknown tensor type id {}", what, type_id));
      if (info.dims[0] % type->block_elems != 0) {
        error_at(type_at, fmt::format("{}: row length {} is not a multiple of the {} block size {}",
                                      what, info.dims[0], type->name, type->block_elems));
      }
      info.type = type->type;
      info.n_elements = n_elements;
      // n_elements < 2^63 and block_bytes/block_elems <= 36/1 ... check the product anyway.
      const uint64_t blocks = n_elements / type->block_elems;
      if (blocks > std::numeric_limits<uint64_t>::max() / type->block_bytes) {
        error_at(type_at, fmt::format("{}: byte size overflows", what));
      }
      info.n_bytes = blocks * type->block_bytes;
      const uint64_t offset_at = pos_;
      info.offset = read<uint64_t>(what);
      if (info.offset % file_.alignment_ != 0) {
        error_at(offset_at, fmt::format("{}: data offset {} is not a multiple of the alignment {}",
                                        what, info.offset, file_.alignment_));
      }
      file_.tensor_index_.emplace(info.name, file_.tensors_.size());
      file_.tensors_.push_back(std::move(info));
    }
  }

  void place_tensors() {
    const uint64_t header_end = pos_;
    const uint64_t alignment = file_.alignment_;
    const uint64_t data_offset = header_end + (alignment - header_end % alignment) % alignment;
    file_.data_offset_ = data_offset;
    if (file_.tensors_.empty()) return;
    if (data_offset > bytes_.size()) {
      error_at(header_end, fmt::format("data section would start at byte {}, past the end of the "
                                       "{}-byte file", data_offset, bytes_.size()));
    }
    const uint64_t data_size = bytes_.size() - data_offset;
    for (TensorInfo& t : file_.tensors_) {
      if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
        error_at(t.info_offset,
                 fmt::format("tensor '{}': data [{}, +{}) lies outside the {}-byte data section "
                             "(file truncated?)", t.name, t.offset, t.n_bytes, data_size));
      }
      t.file_offset = data_offset + t.offset;
      t.data = bytes_.data() + t.file_offset;
    }
    // No two tensors may share bytes.
    std::vector<const TensorInfo*> by_offset;
    by_offset.reserve(file_.tensors_.size());
    for (const TensorInfo& t : file_.tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      const TensorInfo& prev = *by_offset[i - 1];
      const TensorInfo& next = *by_offset[i];
      if (prev.offset + prev.n_bytes > next.offset) {
        error_at(next.info_offset, fmt::format("tensor '{}' (data at {}) overlaps tensor '{}' "
                                               "(data [{}, +{}))", next.name, next.offset,
                                               prev.name, prev.offset, prev.n_bytes));
      }
    }
  }

  File& file_;
  std::span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
  uint64_t tensor_count_ = 0;
  uint64_t tensor_count_at_ = 0;
  uint64_t kv_count_ = 0;
};

int64_t TensorInfo::rows() const {
  int64_t rows = 1;
  for (size_t d = 1; d < dims.size(); ++d) rows *= dims[d];
  return rows;
}

File File::open(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  return parse(mapped->bytes(), path.string(), mapped);
}

File File::parse(std::span<const uint8_t> bytes, std::string name,
                 std::shared_ptr<const MappedFile> owner) {
  File file;
  file.name_ = std::move(name);
  file.owner_ = std::move(owner);
  file.bytes_ = bytes;
  Parser(file).run();
  return file;
}

const Value* File::find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

const Value& File::require(std::string_view key) const {
  const Value* value = find(key);
  if (value == nullptr) fail("{}: metadata key '{}' is missing", name_, key);
  return *value;
}

void File::type_mismatch(std::string_view key, const Value& value,
                         std::string_view expected) const {
  fail("{}: metadata key '{}' has type {}, expected {}", name_, key, describe_type(value),
       expected);
}

uint64_t File::get_uint(std::string_view key) const {
  const Value& value = require(key);
  uint64_t out = 0;
  if (!value.to_u64(out)) type_mismatch(key, value, "a non-negative integer");
  return out;
}

double File::get_float(std::string_view key) const {
  const Value& value = require(key);
  double out = 0;
  if (!value.to_f64(out)) type_mismatch(key, value, "a number");
  return out;
}

std::string_view File::architecture() const { return get<std::string>("general.architecture"); }

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace tandem::gguf
