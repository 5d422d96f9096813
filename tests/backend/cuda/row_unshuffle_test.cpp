// The bit maps that let the GPU undo the CPU's row interleaving (row_unshuffle.h), learnt
// from the CPU's own unpack functions and applied by unshuffle_group, the host form of the
// GPU kernel (same per-byte function): device-free, these run in every CUDA build. The
// last test runs the kernel itself (a device is needed).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "backend/cpu/interleaved.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/row_unshuffle.h"
#include "cuda_test_support.h"
#include "support/random_blocks.h"

namespace tandem::cuda {
namespace {

struct Layout {
  DType type;
  cpu::RepackFn repack;
  cpu::UnpackFn unpack;
};

const Layout kLayouts[] = {
    {DType::Q4_K, cpu::repack_q4_k_x8, cpu::unpack_q4_k_x8},   {DType::Q5_K, cpu::repack_q5_k_x8, cpu::unpack_q5_k_x8},
    {DType::Q6_K, cpu::repack_q6_k_x8, cpu::unpack_q6_k_x8},   {DType::IQ4_XS, cpu::repack_iq4_xs_x8, cpu::unpack_iq4_xs_x8},
    {DType::Q5_0, cpu::repack_q5_0_x8, cpu::unpack_q5_0_x8},   {DType::Q8_0, cpu::repack_q8_0_x8, cpu::unpack_q8_0_x8},
    {DType::Q4_0, cpu::repack_q4_0_x8, cpu::unpack_q4_0_x8},   {DType::IQ4_NL, cpu::repack_q4_0_x8, cpu::unpack_q4_0_x8},
};

// The host form of the GPU kernel (same per-byte function): one group (8 rows of n
// elements, stored interleaved at `group`) to file-layout rows.
void unshuffle_group(const RowUnshuffle& u, const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  const int64_t blocks = n / u.block_elems;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* in = group + static_cast<size_t>(b) * 8 * u.block_bytes;
    for (size_t o = 0; o < 8 * u.block_bytes; ++o) {
      const size_t r = o / u.block_bytes, k = o % u.block_bytes;
      rows[r * row_bytes + static_cast<size_t>(b) * u.block_bytes + k] =
          unshuffled_byte(in, u.byte_src.data(), u.bit_src.data(), o);
    }
  }
}

TEST(RowUnshuffle, EveryCpuLayoutIsABitPermutationTheMapUndoes) {
  std::mt19937 rng(5);
  for (const Layout& l : kLayouts) {
    SCOPED_TRACE(dtype_name(l.type));
    const auto map = derive_row_unshuffle(l.unpack, l.type);
    ASSERT_TRUE(map.has_value()) << "no bit map for the CPU's layout: its experts would stream unpacked by the CPU";
    const DTypeInfo& info = dtype_info(l.type);
    EXPECT_EQ(map->block_bytes, info.block_bytes);
    // 8 rows of 3 blocks, random bits (every scale and code pattern), packed as the CPU does.
    const int64_t n = 3 * info.block_elems;
    const size_t row_bytes = 3 * info.block_bytes;
    const std::vector<uint8_t> rows = ::tandem::testing::random_blocks(l.type, 8 * 3, rng);
    std::vector<uint8_t> group(rows.size()), back(rows.size(), 0xA5);
    l.repack(rows.data(), row_bytes, n, group.data());
    ASSERT_NE(group, rows) << "the layout moves bytes, or this test proves nothing";
    unshuffle_group(*map, group.data(), n, back.data(), row_bytes);
    EXPECT_EQ(back, rows);
    // Whole bytes that just move are single loads; Q8_0's codes and scales all do.
    size_t whole = 0;
    for (const uint16_t s : map->byte_src) whole += s != kNotOneByte;
    if (l.type == DType::Q8_0) {
      EXPECT_EQ(whole, map->byte_src.size());
    }
    EXPECT_GT(whole, 0u);
  }
}

// Stand-ins for layouts that do more than move bits: no map, so such experts would stream
// unpacked by their holder.
void sets_a_constant_bit(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  cpu::unpack_q8_0_x8(group, n, rows, row_bytes);
  rows[5] |= 0x10;
}
void xors_two_bits(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  cpu::unpack_q8_0_x8(group, n, rows, row_bytes);
  rows[7] = static_cast<uint8_t>(rows[7] ^ ((group[40] & 1) << 3));
}

TEST(RowUnshuffle, AnythingButABitPermutationHasNoMap) {
  EXPECT_FALSE(derive_row_unshuffle(sets_a_constant_bit, DType::Q8_0).has_value());
  EXPECT_FALSE(derive_row_unshuffle(xors_two_bits, DType::Q8_0).has_value());
  EXPECT_FALSE(derive_row_unshuffle(nullptr, DType::Q8_0).has_value());
  EXPECT_TRUE(derive_row_unshuffle(cpu::unpack_q8_0_x8, DType::Q8_0).has_value());
}

// The kernel in place on a slab of 5 groups of 8 rows (512 elements a row), every layout.
TEST(RowUnshuffle, KernelRestoresTheFileRowsInPlace) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(6);
  for (const Layout& l : kLayouts) {
    SCOPED_TRACE(dtype_name(l.type));
    const auto map = derive_row_unshuffle(l.unpack, l.type);
    ASSERT_TRUE(map.has_value());
    const DTypeInfo& info = dtype_info(l.type);
    const int64_t n = 512, groups = 5;
    const size_t row_bytes = static_cast<size_t>(n / info.block_elems) * info.block_bytes;
    const std::vector<uint8_t> rows = ::tandem::testing::random_blocks(l.type, groups * 8 * (n / info.block_elems), rng);
    std::vector<uint8_t> packed(rows.size());
    for (int64_t g = 0; g < groups; ++g) {
      l.repack(rows.data() + g * 8 * row_bytes, row_bytes, n, packed.data() + g * 8 * row_bytes);
    }
    DeviceBuffer slab = testing::upload(packed), byte_src = testing::upload(map->byte_src),
                 bit_src = testing::upload(map->bit_src);
    TANDEM_CUDA_CHECK(cudaDeviceSynchronize());
    unshuffle_groups(nullptr, slab.as<uint8_t>(), groups, row_bytes, map->block_bytes, byte_src.as<uint16_t>(),
                     bit_src.as<uint16_t>());
    TANDEM_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(testing::download<uint8_t>(slab, rows.size()), rows);
  }
}

}  // namespace
}  // namespace tandem::cuda
