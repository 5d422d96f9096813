// A model as the GGUF file or files that hold it. Large models are often published split
// ("name-00001-of-00003.gguf", written by llama.cpp's gguf-split): metadata lives in the
// first part, tensors are spread over all parts, and each part carries split.* keys.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"

namespace tandem::gguf {

class ModelFiles {
 public:
  // Opens `path`; if it names any part of a split model, opens and checks every part.
  static ModelFiles open(const std::filesystem::path& path);
  ModelFiles(ModelFiles&&) = default;
  ModelFiles& operator=(ModelFiles&&) = default;
  ModelFiles(const ModelFiles&) = delete;  // tensors_ points into parts_
  ModelFiles& operator=(const ModelFiles&) = delete;

  // Metadata of the model (the first part's).
  const File& primary() const { return parts_.front(); }
  const std::vector<File>& parts() const { return parts_; }
  // All tensors of all parts, in part order then file order.
  const std::vector<const TensorInfo*>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;
  uint64_t total_file_bytes() const;
  // Reads every page of every part once, so that the first tokens do not stall on disk
  // reads; progress(done_bytes, total_bytes) is called about every 1%.
  void prefault(const std::function<void(uint64_t, uint64_t)>& progress) const;

 private:
  ModelFiles() = default;
  void index_tensors();

  std::vector<File> parts_;
  std::vector<const TensorInfo*> tensors_;
  std::map<std::string, const TensorInfo*, std::less<>> by_name_;
};

// If `path` looks like "<prefix>-NNNNN-of-MMMMM.gguf", returns true and fills the pieces.
bool parse_split_name(const std::filesystem::path& path, std::string& prefix, int& index,
                      int& count);
std::filesystem::path split_part_path(const std::string& prefix, int index, int count);

}  // namespace tandem::gguf
