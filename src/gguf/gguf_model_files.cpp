#include "gguf/gguf_model_files.h"

#include <regex>

namespace tandem::gguf {
namespace {

constexpr std::string_view kSplitNo = "split.no";
constexpr std::string_view kSplitCount = "split.count";
constexpr std::string_view kSplitTensors = "split.tensors.count";

}  // namespace

bool parse_split_name(const std::filesystem::path& path, std::string& prefix, int& index,
                      int& count) {
  static const std::regex pattern(R"((.*)-([0-9]{5})-of-([0-9]{5})\.gguf)");
  std::smatch match;
  const std::string s = path.string();
  if (!std::regex_match(s, match, pattern)) return false;
  prefix = match[1];
  index = std::stoi(match[2]);
  count = std::stoi(match[3]);
  return index >= 1 && count >= 1 && index <= count;
}

std::filesystem::path split_part_path(const std::string& prefix, int index, int count) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, index, count);
}

ModelFiles ModelFiles::open(const std::filesystem::path& path) {
  ModelFiles model;
  std::string prefix;
  int index = 0, count = 0;
  const bool split_name = parse_split_name(path, prefix, index, count);
  if (!split_name || count == 1) {
    model.parts_.push_back(File::open(path));
    const File& file = model.parts_.front();
    if (file.contains(kSplitCount) && file.get_uint(kSplitCount) > 1) {
      fail("{}: this is part {} of a {}-part split model, but the file name does not follow "
           "the '<name>-00001-of-000NN.gguf' pattern, so the other parts cannot be found",
           file.name(), file.get_uint(kSplitNo) + 1, file.get_uint(kSplitCount));
    }
    model.index_tensors();
    return model;
  }
  for (int i = 1; i <= count; ++i) {
    const std::filesystem::path part = split_part_path(prefix, i, count);
    if (!std::filesystem::exists(part)) {
      fail("split model '{}': part {} of {} is missing ({})", path.string(), i, count,
           part.string());
    }
    model.parts_.push_back(File::open(part));
    const File& file = model.parts_.back();
    if (!file.contains(kSplitNo) || !file.contains(kSplitCount)) {
      fail("{}: named as part {} of {} but has no split.no/split.count metadata", file.name(), i,
           count);
    }
    if (file.get_uint(kSplitNo) != static_cast<uint64_t>(i - 1) ||
        file.get_uint(kSplitCount) != static_cast<uint64_t>(count)) {
      fail("{}: metadata says part {} of {}, the file name says part {} of {}", file.name(),
           file.get_uint(kSplitNo) + 1, file.get_uint(kSplitCount), i, count);
    }
  }
  model.index_tensors();
  const File& first = model.primary();
  if (first.contains(kSplitTensors) &&
      first.get_uint(kSplitTensors) != model.tensors_.size()) {
    fail("split model '{}': split.tensors.count is {} but the {} parts hold {} tensors",
         first.name(), first.get_uint(kSplitTensors), count, model.tensors_.size());
  }
  return model;
}

void ModelFiles::index_tensors() {
  for (const File& part : parts_) {
    for (const TensorInfo& tensor : part.tensors()) {
      auto [it, inserted] = by_name_.emplace(tensor.name, &tensor);
      if (!inserted) {
        fail("{}: tensor '{}' also appears in another part of this split model", part.name(),
             tensor.name);
      }
      tensors_.push_back(&tensor);
    }
  }
}

const TensorInfo* ModelFiles::find_tensor(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

uint64_t ModelFiles::total_file_bytes() const {
  uint64_t total = 0;
  for (const File& part : parts_) total += part.file_size();
  return total;
}

void ModelFiles::prefault(const std::function<void(uint64_t, uint64_t)>& progress) const {
  const uint64_t total = total_file_bytes(), step = std::max<uint64_t>(total / 100, 1);
  uint64_t done = 0, next_report = 0;
  uint8_t sum = 0;
  for (const File& part : parts_) {
    const std::span<const uint8_t> bytes = part.bytes();
    for (uint64_t at = 0; at < bytes.size(); at += 4096) {
      sum ^= bytes[at];
      if (done + at >= next_report) {
        if (progress) progress(done + at, total);
        next_report += step;
      }
    }
    done += bytes.size();
  }
  volatile uint8_t sink = sum;  // keep the reads
  (void)sink;
  if (progress) progress(total, total);
}

}  // namespace tandem::gguf
