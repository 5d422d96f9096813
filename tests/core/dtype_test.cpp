#include <gtest/gtest.h>

#include "core/dtype.h"

namespace tandem {
namespace {

TEST(DType, GeometryOfCommonTypes) {
  EXPECT_EQ(dtype_info(DType::Q4_K).block_bytes, 144u);
  EXPECT_EQ(dtype_info(DType::Q4_K).block_elems, 256u);
  EXPECT_EQ(dtype_info(DType::Q8_0).block_bytes, 34u);
  EXPECT_EQ(dtype_info(DType::IQ4_XS).block_bytes, 136u);
  EXPECT_EQ(dtype_info(DType::BF16).block_bytes, 2u);
  EXPECT_EQ(dtype_name(DType::Q6_K), "Q6_K");
}

TEST(DType, UnknownIdsAndNames) {
  EXPECT_FALSE(dtype_info(4u).has_value());   // Q4_2, removed from the format
  EXPECT_FALSE(dtype_info(31u).has_value());
  EXPECT_FALSE(dtype_info(1000u).has_value());
  EXPECT_EQ(dtype_from_name("q4_k"), DType::Q4_K);
  EXPECT_EQ(dtype_from_name("IQ4_XS"), DType::IQ4_XS);
  EXPECT_FALSE(dtype_from_name("q4_k_m").has_value());
}

TEST(DType, IdsRoundTrip) {
  for (uint32_t id = 0; id < 64; ++id) {
    if (auto info = dtype_info(id)) {
      EXPECT_EQ(static_cast<uint32_t>(info->type), id);
      EXPECT_EQ(dtype_from_name(info->name), info->type);
    }
  }
}

}  // namespace
}  // namespace tandem
