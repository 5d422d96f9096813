// A read-only memory map of a whole file. Weights are used in place from it (zero copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

namespace tandem {

class MappedFile {
 public:
  // Maps `path` read-only; throws tandem::Error naming the file and the OS reason.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

  // Drops the process's mapping of the whole pages inside [p, p + bytes) when they lie in
  // a live MappedFile (a no-op for any other memory): for bytes a backend has copied
  // elsewhere, so they stop counting twice. Safe: the file stays mapped and a later read
  // faults the page back in from the file.
  static void release_pages(const void* p, size_t bytes);

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tandem
