// The GPU side of row_unshuffle.h: groups of 8 streamed rows rearranged in place.
#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/row_unshuffle.h"

namespace tandem::cuda {
namespace {

// One CTA per group: the group's bytes into shared memory, then every output byte
// (row-major in the file's layout, so writes coalesce) from its group block there.
__global__ void unshuffle_groups_kernel(uint8_t* data, size_t row_bytes, size_t block_bytes,
                                        const uint16_t* __restrict__ byte_src, const uint16_t* __restrict__ bit_src) {
  extern __shared__ __align__(16) uint8_t group[];
  uint8_t* base = data + static_cast<size_t>(blockIdx.x) * 8 * row_bytes;
  const size_t n = 8 * row_bytes, group_block = 8 * block_bytes;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) group[i] = base[i];
  __syncthreads();
  for (size_t o = threadIdx.x; o < n; o += blockDim.x) {
    const size_t r = o / row_bytes, w = o % row_bytes, b = w / block_bytes, k = w % block_bytes;
    base[o] = unshuffled_byte(group + b * group_block, byte_src, bit_src, r * block_bytes + k);
  }
}

}  // namespace

void unshuffle_groups(cudaStream_t stream, uint8_t* data, int64_t n_groups, size_t row_bytes, size_t block_bytes,
                      const uint16_t* byte_src, const uint16_t* bit_src) {
  if (n_groups == 0) return;
  if (row_bytes > kUnshuffleMaxRowBytes || block_bytes == 0 || row_bytes % block_bytes != 0) {
    fail_cuda(cudaErrorInvalidValue, "unshuffle_groups: unsupported row", __FILE__, __LINE__);
  }
  unshuffle_groups_kernel<<<static_cast<unsigned>(n_groups), 256, 8 * row_bytes, stream>>>(data, row_bytes, block_bytes,
                                                                                           byte_src, bit_src);
  TANDEM_CUDA_CHECK_LAUNCH();
}

}  // namespace tandem::cuda
