// Device memory and the per-session CUDA state: owning buffers (device and pinned host)
// and a context holding the compute stream, a copy stream
// and the cuBLAS handle. Host-side C++ only (no kernels here).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/memory.h"

typedef struct cublasContext* cublasHandle_t;

namespace tandem::cuda {

// True when the CUDA runtime sees at least one device. Never throws; clears the error a
// missing driver leaves behind.
bool device_available();

// True when the current device has the f16 tensor-core mma the mma kernels use (compute
// capability 8.0+: attention_mma.cu, the tile GEMM). Asked once: a process drives one device.
bool device_has_mma();

// cudaMalloc'd bytes, freed on destruction (a Memory that knows how it was made). Move-only.
class DeviceBuffer : public Memory {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  void* data() const { return as<void>(); }
};

// Page-locked host memory (cudaMallocHost): the staging area for hidden states that cross
// between the GPU and the CPU, so copies are DMA and can overlap compute. Move-only.
class PinnedBuffer : public Memory {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  void* data() const { return as<void>(); }
};

// The CUDA state of one session: its device, a compute stream, a copy stream (uploads and
// the hidden-state traffic of hybrid execution overlap compute on it) and a cuBLAS handle
// bound to the compute stream.
class CudaContext {
 public:
  explicit CudaContext(int device = 0);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cudaStream_t copy_stream() const { return copy_stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  // Waits for all work on both streams; fails on any error they raised.
  void synchronize() const;

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaStream_t copy_stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
};

// Synchronous helpers for tests and set-up (never on the hot path).
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);

}  // namespace tandem::cuda
