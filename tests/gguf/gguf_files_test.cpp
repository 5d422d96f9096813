// Real files: every llama.cpp vocab GGUF in ../shared/data/vocab and the real model
// (TANDEM_TEST_MODEL) parse; typed accessors and their errors; split models.
#include <gtest/gtest.h>

#include <functional>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_model_files.h"
#include "gguf/gguf_writer.h"
#include "support/test_support.h"

namespace tandem::gguf {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(GgufFiles, EveryVocabFileParses) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(shared / "data" / "vocab")) {
    if (entry.path().extension() != ".gguf") continue;
    const File file = File::open(entry.path());
    EXPECT_FALSE(file.architecture().empty()) << entry.path();
    const auto& tokens = file.get_array<std::string>("tokenizer.ggml.tokens");
    EXPECT_GT(tokens.size(), 1000u) << entry.path();
    EXPECT_FALSE(file.get<std::string>("tokenizer.ggml.model").empty());
    ++parsed;
  }
  EXPECT_GE(parsed, 10);
}

TEST(GgufFiles, RealModelTypedAccess) {
  TANDEM_REQUIRE_TEST_MODEL(path);
  const ModelFiles model = ModelFiles::open(path);
  const File& f = model.primary();
  EXPECT_EQ(f.architecture(), "qwen2");
  EXPECT_EQ(f.get<uint32_t>("qwen2.block_count"), 24u);
  EXPECT_EQ(f.get_uint("qwen2.embedding_length"), 896u);
  EXPECT_FLOAT_EQ(f.get<float>("qwen2.rope.freq_base"), 1e6f);
  EXPECT_EQ(f.get_array<std::string>("tokenizer.ggml.tokens").size(), 151936u);
  EXPECT_EQ(f.get_array<int32_t>("tokenizer.ggml.token_type").size(), 151936u);
  EXPECT_EQ(f.get_or<uint32_t>("qwen2.missing_key", 7u), 7u);
  EXPECT_EQ(model.tensors().size(), 291u);
  const TensorInfo* embd = model.find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dims, (std::vector<int64_t>{896, 151936}));
  EXPECT_EQ(embd->rows(), 151936);

  EXPECT_EQ(error_of([&] { f.get<uint64_t>("qwen2.block_count"); }),
            std::string(path) + ": metadata key 'qwen2.block_count' has type uint32, expected uint64");
  EXPECT_EQ(error_of([&] { f.get<uint32_t>("qwen35moe.block_count"); }),
            std::string(path) + ": metadata key 'qwen35moe.block_count' is missing");
  EXPECT_EQ(error_of([&] { f.get_array<uint32_t>("tokenizer.ggml.tokens"); }),
            std::string(path) + ": metadata key 'tokenizer.ggml.tokens' has type array[string; 151936], "
                                "expected array[uint32]");
  EXPECT_NE(error_of([&] { f.get_uint("general.name"); }).find("expected a non-negative integer"),
            std::string::npos);
}

TEST(GgufFiles, MissingFileIsAClearError) {
  EXPECT_NE(error_of([] { File::open("/no/such/model.gguf"); }).find("cannot open '/no/such/model.gguf'"),
            std::string::npos);
}

// Writes a model split into `count` parts with one tensor each, as gguf-split does.
void write_split(const std::filesystem::path& dir, int count, int declared_tensors) {
  for (int i = 0; i < count; ++i) {
    Writer w(split_part_path((dir / "m").string(), i + 1, count));
    if (i == 0) w.add("general.architecture", Value("testarch"));
    w.add("split.no", Value(static_cast<uint16_t>(i)));
    w.add("split.count", Value(static_cast<uint16_t>(count)));
    w.add("split.tensors.count", Value(static_cast<int32_t>(declared_tensors)));
    w.add_tensor("t" + std::to_string(i), DType::F32, {8});
    w.write_header();
    w.write_tensor_data(std::vector<uint8_t>(32, static_cast<uint8_t>(i)));
    w.finish();
  }
}

TEST(GgufFiles, SplitModelFromAnyPart) {
  const auto dir = testing::scratch_dir("gguf_split");
  write_split(dir, 3, 3);
  for (int part = 1; part <= 3; ++part) {
    const ModelFiles model = ModelFiles::open(split_part_path((dir / "m").string(), part, 3));
    ASSERT_EQ(model.parts().size(), 3u);
    EXPECT_EQ(model.primary().architecture(), "testarch");
    ASSERT_EQ(model.tensors().size(), 3u);
    EXPECT_EQ(model.find_tensor("t2")->data[0], 2);
  }
}

TEST(GgufFiles, SplitModelErrors) {
  const auto dir = testing::scratch_dir("gguf_split_errors");
  write_split(dir, 3, 4);
  EXPECT_NE(error_of([&] { ModelFiles::open(split_part_path((dir / "m").string(), 1, 3)); })
                .find("split.tensors.count is 4 but the 3 parts hold 3 tensors"),
            std::string::npos);
  std::filesystem::remove(split_part_path((dir / "m").string(), 2, 3));
  EXPECT_NE(error_of([&] { ModelFiles::open(split_part_path((dir / "m").string(), 1, 3)); })
                .find("part 2 of 3 is missing"),
            std::string::npos);
  // A part renamed so that its name no longer matches its metadata.
  std::filesystem::copy_file(split_part_path((dir / "m").string(), 1, 3), dir / "single.gguf");
  EXPECT_NE(error_of([&] { ModelFiles::open(dir / "single.gguf"); }).find("part 1 of a 3-part split"),
            std::string::npos);
}

TEST(GgufFiles, SplitNameParsing) {
  std::string prefix;
  int index = 0, count = 0;
  EXPECT_TRUE(parse_split_name("/m/Qwen3.5-35B-A3B-Q4_K_M-00002-of-00003.gguf", prefix, index, count));
  EXPECT_EQ(prefix, "/m/Qwen3.5-35B-A3B-Q4_K_M");
  EXPECT_EQ(index, 2);
  EXPECT_EQ(count, 3);
  EXPECT_FALSE(parse_split_name("/m/model.gguf", prefix, index, count));
  EXPECT_FALSE(parse_split_name("/m/x-00004-of-00003.gguf", prefix, index, count));
  EXPECT_EQ(split_part_path("/m/x", 1, 12).string(), "/m/x-00001-of-00012.gguf");
}

}  // namespace
}  // namespace tandem::gguf
