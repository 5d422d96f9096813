// Owned bytes on some device, released by the function of whoever allocated them (free,
// cudaFree, cudaFreeHost). C++17, so CUDA sources can use it too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace tandem {

// Bytes on one device, released by the function of the backend that made them. Move-only.
class Memory {
 public:
  using Release = void (*)(void*);
  Memory() = default;
  Memory(void* data, size_t bytes, Release release) : data_(data), bytes_(bytes), release_(release) {}
  ~Memory() { reset(); }
  Memory(Memory&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), release_(o.release_) {}
  Memory& operator=(Memory&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
      release_ = o.release_;
    }
    return *this;
  }
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;
  template <class T = uint8_t>
  T* as() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }
  void reset() {
    if (data_ != nullptr && release_ != nullptr) release_(data_);
    data_ = nullptr;
    bytes_ = 0;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Release release_ = nullptr;
};

}  // namespace tandem
