// Row access to GGUF tensors: the right bytes decoded, and errors that name the tensor.
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant/tensor_rows.h"
#include "support/test_support.h"

namespace tandem::quant {
namespace {

TEST(TensorRows, DecodesTheRequestedRows) {
  const auto path = testing::scratch_dir("tensor_rows") / "rows.gguf";
  std::vector<float> values(64 * 5);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 61) * 0.25f - 7.0f;
  std::vector<uint8_t> q8(5 * 2 * 34);
  ASSERT_EQ(quantize_row(DType::Q8_0, values.data(), q8.data(), 64 * 5), q8.size());
  {
    gguf::Writer w(path);
    w.add_tensor("embd", DType::Q8_0, {64, 5});
    w.add_tensor("odd", DType::IQ2_XXS, {256});
    w.write_header();
    w.write_tensor_data(q8);
    w.write_tensor_data(std::vector<uint8_t>(66));
    w.finish();
  }
  const gguf::File file = gguf::File::open(path);
  const gguf::TensorInfo& embd = *file.find_tensor("embd");
  std::vector<float> all(64 * 5), rows(64 * 2);
  dequantize_row(DType::Q8_0, q8.data(), all.data(), 64 * 5);
  dequantize_rows(embd, 3, 2, rows.data());
  for (int i = 0; i < 128; ++i) ASSERT_EQ(rows[i], all[3 * 64 + i]) << i;
  for (int i = 0; i < 128; ++i) EXPECT_NEAR(rows[i], values[3 * 64 + i], 0.04f);  // absmax 8: step 8/127, f16 scale

  try {
    dequantize_rows(embd, 4, 2, rows.data());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tensor 'embd': rows [4, 6) are outside its 5 rows");
  }
  try {
    dequantize_rows(*file.find_tensor("odd"), 0, 1, rows.data());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tensor 'odd' has type IQ2_XXS (id 16), which tandem cannot decode yet");
  }
}

}  // namespace
}  // namespace tandem::quant
