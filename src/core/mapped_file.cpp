#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/error.h"

namespace tandem {

namespace {
// Live mappings, for release_pages.
std::mutex g_mappings_mutex;
std::vector<std::pair<const uint8_t*, size_t>> g_mappings;
}  // namespace

void MappedFile::release_pages(const void* p, size_t bytes) {
  const auto* begin = static_cast<const uint8_t*>(p);
  std::lock_guard lock(g_mappings_mutex);
  const bool mapped = std::any_of(g_mappings.begin(), g_mappings.end(), [&](const auto& m) {
    return begin >= m.first && bytes <= m.second && begin - m.first <= static_cast<ptrdiff_t>(m.second - bytes);
  });
  if (!mapped) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
  const uintptr_t last = (reinterpret_cast<uintptr_t>(begin) + bytes) / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

std::shared_ptr<const MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '{}': {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot stat '{}': {}", path.string(), std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("'{}' is not a regular file", path.string());
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* data = ::mmap(nullptr, file->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail("cannot map '{}' ({} bytes): {}", path.string(), file->size_, std::strerror(err));
    }
    file->data_ = static_cast<const uint8_t*>(data);
    std::lock_guard lock(g_mappings_mutex);
    g_mappings.emplace_back(file->data_, file->size_);
  }
  ::close(fd);  // the mapping keeps the file alive
  return file;
}

MappedFile::~MappedFile() {
  if (data_ == nullptr) return;
  {
    std::lock_guard lock(g_mappings_mutex);
    std::erase(g_mappings, std::pair<const uint8_t*, size_t>(data_, size_));
  }
  ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace tandem
