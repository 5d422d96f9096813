// The 16-row group dots (dot_x16: two consecutive groups in one pass on 512-bit vectors)
// must give exactly the bits of the 8-row pass of the same path on each group: the same
// integer sums and the same float operations per row. The 16-row frames of the K-quants
// and IQ4_XS also run with the 512-bit vectors emulated by pairs of 256-bit ones
// (vnni_emulated, any AVX2 CPU); the native avx512_vnni passes of every type run where the
// CPU has AVX512-VNNI.
#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/interleaved.h"
#include "backend/cpu/quant_dot.h"
#include "interleaved_test_util.h"
#include "support/random_blocks.h"

namespace tandem::cpu {
namespace {

struct X16Case {
  std::string path;
  DType type;
  GroupDotFn x8, x16;
};

std::vector<X16Case> cases() {
  std::vector<X16Case> out = {
      {"vnni-emulated", DType::Q4_K, vnni_emulated::dot_q4_k_x8, vnni_emulated::dot_q4_k_x16},
      {"vnni-emulated", DType::Q5_K, vnni_emulated::dot_q5_k_x8, vnni_emulated::dot_q5_k_x16},
      {"vnni-emulated", DType::Q6_K, vnni_emulated::dot_q6_k_x8, vnni_emulated::dot_q6_k_x16},
      {"vnni-emulated", DType::IQ4_XS, vnni_emulated::dot_iq4_xs_x8, vnni_emulated::dot_iq4_xs_x16},
  };
  if (cpu_runs(Isa::avx512_vnni)) {
    for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS, DType::Q4_0, DType::IQ4_NL, DType::Q5_0,
                    DType::Q8_0}) {
      const QuantDotKernel k = quant_dot_kernel(t, Isa::avx512_vnni);
      out.push_back({"avx512-vnni", t, k.dot_x8, k.dot_x16});
    }
  } else {
    std::printf("NOTE: this CPU has no AVX512-VNNI: only the emulated 16-row passes run here\n");
  }
  return out;
}


TEST(InterleavedX16, SixteenRowPassEqualsTwoGroupPasses) {
  std::mt19937 rng(13);
  for (const X16Case& t : cases()) {
    ASSERT_NE(t.x8, nullptr) << t.path << " " << dtype_name(t.type);
    ASSERT_NE(t.x16, nullptr) << t.path << " " << dtype_name(t.type);
    const QuantDotKernel k = quant_dot_kernel(t.type, Isa::avx2);
    const RepackFn repack = k.repack_x8;
    const int64_t block = dtype_info(t.type).block_elems;
    // One block, the models' widths (1536: Qwen2.5-1.5B, 2048: qwen35moe, 8960: the 1.5B's
    // ffn_down input) and, for the 32-element types, spans of 32 blocks and a partial one.
    bool failed = false;  // one failing shape per case says enough
    for (int64_t n : {block, int64_t{1536}, int64_t{2048}, int64_t{8960}, int64_t{1024 + 32 * 3}}) {
      if (n % block != 0 || failed) continue;
      const size_t row_bytes = static_cast<size_t>(n / block) * dtype_info(t.type).block_bytes;
      const auto rows = testing::random_blocks(t.type, n / block * 16, rng);
      std::vector<uint8_t> groups(rows.size());
      repack(rows.data(), row_bytes, n, groups.data());
      repack(rows.data() + 8 * row_bytes, row_bytes, n, groups.data() + 8 * row_bytes);
      for (int n_cols = 1; n_cols <= 8 && !failed; ++n_cols) {
        const size_t stride = activation_row_bytes(k, n) + 40;
        const auto act = testing::quantized_activations(k, n, n_cols, stride, rng);
        const int64_t os = 19;  // 16 rows per column, and room to see stray writes
        std::vector<float> expect(static_cast<size_t>(n_cols * os), -1.0f), got(expect.size(), -1.0f);
        t.x8(n, groups.data(), act.data(), stride, n_cols, expect.data(), os);
        t.x8(n, groups.data() + 8 * row_bytes, act.data(), stride, n_cols, expect.data() + 8, os);
        t.x16(n, groups.data(), act.data(), stride, n_cols, got.data(), os);
        int wrong = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(expect[i]) && ++wrong <= 3) {
            ADD_FAILURE() << t.path << " " << dtype_name(t.type) << " n=" << n << " cols=" << n_cols << " column "
                          << i / os << " row " << i % os << ": " << got[i] << " != " << expect[i];
          }
        }
        failed = wrong > 0;
      }
    }
  }
}

// The prefetch of a 16-row pass aims each of its two streams at what that stream itself
// reads `distance` bytes later. Model: the first stream reads groups 0, 2, 4, ... of a
// row tile, in order, so after s bytes of reading it is at byte 2G * (s / G) + s % G.
TEST(InterleavedX16, PairPrefetchFollowsItsOwnStream) {
  const auto stream_at = [](int64_t s, int64_t g) { return 2 * g * (s / g) + s % g; };
  for (int64_t g : {176, 1152, 4352, 6720, 16384}) {
    for (int64_t distance : {64, 4096, 8192, 12288, 40000}) {
      for (int64_t s = 0; s < 3 * g; s += 32) {
        const PairStream stream(g, distance);
        EXPECT_EQ(stream_at(s, g) - s % g + stream.ahead(s % g), stream_at(s + distance, g))
            << "group " << g << " bytes, distance " << distance << ", " << s << " bytes read";
      }
    }
  }
}

}  // namespace
}  // namespace tandem::cpu
