// Writer round trip: what we write reads back identically (metadata in order with exact
// types, tensor table, data). The file written by RoundTripEveryType is also read by the
// `gguf` Python package in the ctest `gguf_oracle_written` (see CMakeLists.txt).
#include <gtest/gtest.h>

#include <numeric>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "support/test_support.h"

namespace tandem::gguf {
namespace {

std::vector<std::pair<std::string, Value>> every_type_metadata() {
  std::vector<Array> nested = {Array{std::vector<int32_t>{1, 2, 3}}, Array{std::vector<int32_t>{4}}};
  return {
      {"general.architecture", Value("testarch")},
      {"test.u8", Value(uint8_t{200})},
      {"test.i8", Value(int8_t{-100})},
      {"test.u16", Value(uint16_t{60000})},
      {"test.i16", Value(int16_t{-30000})},
      {"test.u32", Value(uint32_t{4000000000u})},
      {"test.i32", Value(int32_t{-2000000000})},
      {"test.f32", Value(1.5f)},
      {"test.bool", Value(true)},
      {"test.string", Value(std::string("héllo 日本 🙂\n"))},
      {"test.u64", Value(uint64_t{1} << 63)},
      {"test.i64", Value(int64_t{-1} << 62)},
      {"test.f64", Value(-1e-300)},
      {"test.array_f32", Value(std::vector<float>{0.25f, -8.0f})},
      {"test.array_bool", Value(std::vector<bool>{true, false})},
      {"test.array_string", Value(std::vector<std::string>{"a", "", "<|im_end|>"})},
      {"test.array_u64", Value(std::vector<uint64_t>{1, UINT64_MAX})},
      {"test.array_nested", Value(std::vector<Array>(nested))},
      {"test.array_empty", Value(std::vector<int32_t>{})},
  };
}

struct TensorSpec {
  std::string name;
  DType type;
  std::vector<int64_t> dims;
};

std::vector<uint8_t> pattern(uint64_t n, uint32_t seed) {
  std::vector<uint8_t> data(n);
  for (uint64_t i = 0; i < n; ++i) data[i] = static_cast<uint8_t>((i * 131 + seed * 17) >> 1);
  return data;
}

TEST(GgufWriter, RoundTripEveryType) {
  const auto dir = testing::scratch_dir("gguf_writer_roundtrip");
  const auto path = dir / "every-type.gguf";
  const auto metadata = every_type_metadata();
  const std::vector<TensorSpec> tensors = {
      {"token_embd.weight", DType::Q4_K, {256, 3}},
      {"blk.0.attn_norm.weight", DType::F32, {7}},
      {"blk.0.ffn_up.weight", DType::Q8_0, {64, 5, 2}},
      {"blk.0.ffn_down.weight", DType::F16, {3, 2, 2, 2}},
      {"output.weight", DType::Q6_K, {512, 2}},
  };
  {
    Writer writer(path, 64);
    for (const auto& [key, value] : metadata) writer.add(key, value);
    for (const TensorSpec& t : tensors) writer.add_tensor(t.name, t.type, t.dims);
    writer.write_header();
    uint32_t seed = 0;
    for (const TensorSpec& t : tensors) {
      uint64_t n = 1;
      for (int64_t d : t.dims) n *= d;
      const DTypeInfo& info = dtype_info(t.type);
      const std::vector<uint8_t> data = pattern(n / info.block_elems * info.block_bytes, seed++);
      // Stream in uneven pieces, as a converter would.
      for (size_t at = 0; at < data.size(); at += 77) {
        writer.write_tensor_data(std::span(data).subspan(at, std::min<size_t>(77, data.size() - at)));
      }
    }
    writer.finish();
  }

  const File file = File::open(path);
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 64u);
  // general.alignment is written first because the alignment differs from the default.
  ASSERT_EQ(file.metadata().size(), metadata.size() + 1);
  EXPECT_EQ(file.metadata()[0].key, "general.alignment");
  EXPECT_EQ(file.get<uint32_t>("general.alignment"), 64u);
  for (size_t i = 0; i < metadata.size(); ++i) {
    EXPECT_EQ(file.metadata()[i + 1].key, metadata[i].first);
    EXPECT_TRUE(file.metadata()[i + 1].value == metadata[i].second) << metadata[i].first;
  }
  EXPECT_EQ(file.get_array<std::string>("test.array_string")[2], "<|im_end|>");
  EXPECT_TRUE(file.get_array<Array>("test.array_nested")[1] == Array{std::vector<int32_t>{4}});
  ASSERT_EQ(file.tensors().size(), tensors.size());
  uint32_t seed = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = file.tensors()[i];
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(t.type, tensors[i].type);
    EXPECT_EQ(t.dims, tensors[i].dims);
    EXPECT_EQ(t.file_offset % 64, 0u);
    const std::vector<uint8_t> expected = pattern(t.n_bytes, seed++);
    EXPECT_EQ(std::memcmp(t.data, expected.data(), t.n_bytes), 0) << t.name;
  }
}

TEST(GgufWriter, RejectsMisuse) {
  const auto dir = testing::scratch_dir("gguf_writer_misuse");
  Writer w(dir / "a.gguf");
  w.add("k", Value(uint32_t{1}));
  EXPECT_THROW(w.add("k", Value(uint32_t{2})), Error);
  EXPECT_THROW(w.add_tensor("t", DType::Q4_K, {100}), Error);  // not a multiple of 256
  EXPECT_THROW(w.add_tensor("t", DType::F32, {}), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {1, 1, 1, 1, 1}), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {0}), Error);
  EXPECT_THROW(w.write_tensor_data(std::vector<uint8_t>(4)), Error);  // before the header
  EXPECT_EQ(w.add_tensor("t", DType::F32, {4}), 16u);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}), Error);  // duplicate name
  w.write_header();
  EXPECT_THROW(w.add("late", Value(true)), Error);
  w.write_tensor_data(std::vector<uint8_t>(8));
  EXPECT_THROW(w.finish(), Error);  // 8 of 16 bytes
  Writer w2(dir / "b.gguf");
  w2.add_tensor("t", DType::F32, {4});
  w2.write_header();
  EXPECT_THROW(w2.write_tensor_data(std::vector<uint8_t>(17)), Error);  // one byte too many
  EXPECT_THROW(Writer(dir / "c.gguf", 48), Error);
}

TEST(GgufWriter, UnwritablePathIsAClearError) {
  Writer w("/nonexistent-dir/x.gguf");
  try {
    w.write_header();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create '/nonexistent-dir/x.gguf'"), std::string::npos);
  }
}

}  // namespace
}  // namespace tandem::gguf
