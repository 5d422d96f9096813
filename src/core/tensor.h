// A non-owning view of a weight tensor: element type, shape (ggml order, ne[0] is the
// contiguous row length), where its bytes are and on which device they live.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace tandem {

enum class Device : uint8_t { Cpu = 0, Cuda = 1 };

struct Tensor {
  std::string name;
  DType type = DType::F32;
  std::array<int64_t, 4> ne = {1, 1, 1, 1};
  int n_dims = 0;
  const uint8_t* data = nullptr;
  Device device = Device::Cpu;
  // Rows stored in groups of 8 (backend/cpu/interleaved.h): a CPU backend's repacked copy,
  // only its matmuls read it. row() does not apply.
  bool interleaved = false;

  bool valid() const { return data != nullptr; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  int64_t elements() const { return ne[0] * rows(); }
  uint64_t row_bytes() const {
    const DTypeInfo& info = dtype_info(type);
    return static_cast<uint64_t>(ne[0]) / info.block_elems * info.block_bytes;
  }
  const uint8_t* row(int64_t r) const { return data + static_cast<uint64_t>(r) * row_bytes(); }
  // Matrix i of a 3-D stack (e.g. expert i of {n_in, n_out, n_experts}), as a 2-D view.
  Tensor matrix(int64_t i) const {
    Tensor m = *this;
    m.ne = {ne[0], ne[1], 1, 1};
    m.n_dims = 2;
    m.data = data + static_cast<uint64_t>(i) * ne[1] * row_bytes();
    return m;
  }
};

}  // namespace tandem
