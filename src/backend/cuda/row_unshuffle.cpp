// Host side of row_unshuffle.h: learning an unpack's bit map from probe blocks.
#include "backend/cuda/row_unshuffle.h"

#include <random>

namespace tandem::cuda {

std::optional<RowUnshuffle> derive_row_unshuffle(InterleavedUnpack* unpack, DType type) {
  if (unpack == nullptr) return std::nullopt;
  const DTypeInfo& info = dtype_info(type);
  const size_t block = info.block_bytes, group = 8 * block, bits = 8 * group;
  if (block == 0 || bits + 1 >= kZeroBit) return std::nullopt;
  // Probe k: input bit i set when bit k of i + 1 is; output bit j's probe values spell the
  // number of its source bit plus one (0: no input bit reaches it).
  int n_probes = 0;
  while ((size_t{1} << n_probes) <= bits) ++n_probes;
  std::vector<uint32_t> source(bits, 0);
  std::vector<uint8_t> in(group), out(group);
  for (int k = 0; k < n_probes; ++k) {
    for (size_t i = 0; i < group; ++i) {
      unsigned v = 0;
      for (int b = 0; b < 8; ++b) v |= static_cast<unsigned>(((8 * i + b + 1) >> k) & 1) << b;
      in[i] = static_cast<uint8_t>(v);
    }
    unpack(in.data(), info.block_elems, out.data(), block);
    for (size_t j = 0; j < bits; ++j) source[j] |= static_cast<uint32_t>((out[j / 8] >> (j % 8)) & 1) << k;
  }
  RowUnshuffle u;
  u.block_bytes = block;
  u.block_elems = info.block_elems;
  u.byte_src.assign(group, kNotOneByte);
  u.bit_src.assign(bits, kZeroBit);
  for (size_t j = 0; j < bits; ++j) {
    if (source[j] > bits) return std::nullopt;  // no such input bit: not a permutation
    if (source[j] != 0) u.bit_src[j] = static_cast<uint16_t>(source[j] - 1);
  }
  for (size_t o = 0; o < group; ++o) {  // whole bytes moved as they are: one load on the GPU
    const uint16_t first = u.bit_src[8 * o];
    bool same = first != kZeroBit && first % 8 == 0;
    for (int i = 1; same && i < 8; ++i) same = u.bit_src[8 * o + i] == first + i;
    if (same) u.byte_src[o] = static_cast<uint16_t>(first / 8);
  }
  // The probes only say where a bit goes if bits just move; random blocks (and an all-zero
  // one) check that the map reproduces the unpack exactly.
  std::mt19937 rng(20261129);
  std::vector<uint8_t> want(group), got(group);
  for (int trial = 0; trial < 9; ++trial) {
    for (uint8_t& b : in) b = trial == 0 ? 0 : static_cast<uint8_t>(rng());
    unpack(in.data(), info.block_elems, want.data(), block);
    for (size_t o = 0; o < group; ++o) got[o] = unshuffled_byte(in.data(), u.byte_src.data(), u.bit_src.data(), o);
    if (got != want) return std::nullopt;
  }
  return u;
}

}  // namespace tandem::cuda
