// Undoing another backend's row interleaving on the GPU (expert streaming, issue 6).
//
// The CPU backend keeps quantized experts interleaved in groups of 8 rows (backend/cpu/
// interleaved.h) and unpacking them on the CPU runs at 0.5-5 GB/s per thread depending on
// the type, below the PCIe link. So the GPU streams the stored bytes as they are (a plain
// copy on the CPU) and rearranges them itself. It needs no knowledge of the CPU's layouts:
// every one of them only moves bits, so the host learns the map by calling the CPU's own
// unpack on probe blocks (probe k sets input bit i when bit k of i + 1 is set; an output
// bit's values over the probes spell its source) and checks it on random blocks. A layout
// that is not a pure bit permutation yields no map, and its experts keep streaming
// unpacked by the CPU.
//
// The unit is a group block: the 8 rows' blocks of one block column (8 x block_bytes
// bytes, the interleaved layout's own unit), whose output is row r's block at
// r x block_bytes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/dtype.h"
#include "core/host_device.h"

namespace tandem::cuda {

inline constexpr uint16_t kNotOneByte = 0xFFFF;  // byte_src: the output byte gathers bits
inline constexpr uint16_t kZeroBit = 0xFFFF;     // bit_src: the output bit is always 0

struct RowUnshuffle {
  size_t block_bytes = 0;   // one row's block in the file type
  int64_t block_elems = 0;  // elements per block
  // Per output byte o of a group block: byte_src[o] is the input byte it equals, or
  // kNotOneByte; then bit_src[8 o + i] is the input bit (8 x byte + bit) of its bit i.
  std::vector<uint16_t> byte_src, bit_src;
};

// An unpack of interleaved rows (backend.h StoredRowsUnpack; this header is also compiled
// as CUDA C++17, which backend.h is not).
using InterleavedUnpack = void(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);

// The map of `unpack` for weights of `type`; nullopt when `unpack` is not a pure bit
// permutation of a group block (or the block is too large to index in 16 bits).
std::optional<RowUnshuffle> derive_row_unshuffle(InterleavedUnpack* unpack, DType type);

// Output byte o of a group block from the input group block `in` (host and device).
TANDEM_HD inline uint8_t unshuffled_byte(const uint8_t* in, const uint16_t* byte_src, const uint16_t* bit_src,
                                         size_t o) {
  const uint16_t from = byte_src[o];
  if (from != kNotOneByte) return in[from];
  unsigned v = 0;
  for (int i = 0; i < 8; ++i) {
    const uint16_t b = bit_src[8 * o + i];
    if (b != kZeroBit) v |= ((in[b >> 3] >> (b & 7)) & 1u) << i;
  }
  return static_cast<uint8_t>(v);
}

// Largest row the GPU kernel takes (a whole group of 8 rows sits in shared memory).
inline constexpr size_t kUnshuffleMaxRowBytes = 6144;

// On the device, in place: n_groups groups of 8 rows of row_bytes at data (interleaved, as
// streamed) become file-layout rows. byte_src / bit_src: the map's arrays on the device.
void unshuffle_groups(cudaStream_t stream, uint8_t* data, int64_t n_groups, size_t row_bytes, size_t block_bytes,
                      const uint16_t* byte_src, const uint16_t* bit_src);

}  // namespace tandem::cuda
