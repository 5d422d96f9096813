// Which repository files make up a quant: tags read from real repositories' naming
// (llama-quantize's tags, gguf-split's part suffix, unsloth's folders), errors that list
// what exists.
#include "hub/hub_files.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace tandem::hub {
namespace {

std::vector<std::string> paths(const std::vector<RepoFile>& files) {
  std::vector<std::string> out;
  for (const RepoFile& f : files) out.push_back(f.path);
  return out;
}

TEST(HubFiles, ParsesNames) {
  const ModelRef a = parse_model_ref("Qwen/Qwen3-8B-GGUF:q8_0");
  EXPECT_EQ(a.repo, "Qwen/Qwen3-8B-GGUF");
  EXPECT_EQ(a.quant, "q8_0");
  EXPECT_EQ(parse_model_ref("unsloth/Qwen3.5-35B-A3B-GGUF").quant, "");
  for (const char* bad : {"noslash", "a/b/c", "/x", "a/..", "a/b:", ""}) {
    EXPECT_THROW(parse_model_ref(bad), Error) << bad;
  }
}

TEST(HubFiles, ReadsQuantTags) {
  EXPECT_EQ(quant_of("Qwen3-8B-Q4_K_M.gguf"), "Q4_K_M");
  EXPECT_EQ(quant_of("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"), "Q4_K_M");
  EXPECT_EQ(quant_of("Qwen3-30B-A3B-IQ4_XS.gguf"), "IQ4_XS");
  EXPECT_EQ(quant_of("Qwen3-8B-BF16.gguf"), "BF16");
  EXPECT_EQ(quant_of("Q8_0/Qwen3-235B-A22B-Q8_0-00002-of-00006.gguf"), "Q8_0");
  EXPECT_EQ(quant_of("Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf"), "UD-Q4_K_XL");
  EXPECT_EQ(quant_of("model.gguf"), "");
}

TEST(HubFiles, PicksTheQuantAndEverySplitPart) {
  const std::vector<RepoFile> files = {
      {"README.md", 10, ""},
      {"M-Q4_K_M.gguf", 100, "a"},
      {"M-Q8_0.gguf", 200, "b"},
      {"mmproj-M-F16.gguf", 50, "c"},
      {"BF16/M-BF16-00002-of-00002.gguf", 300, "e"},
      {"BF16/M-BF16-00001-of-00002.gguf", 300, "d"},
  };
  EXPECT_EQ(paths(pick_quant(files, "o/m", "")), std::vector<std::string>{"M-Q4_K_M.gguf"});
  EXPECT_EQ(paths(pick_quant(files, "o/m", "q8_0")), std::vector<std::string>{"M-Q8_0.gguf"});
  EXPECT_EQ(paths(pick_quant(files, "o/m", "bf16")),
            (std::vector<std::string>{"BF16/M-BF16-00001-of-00002.gguf", "BF16/M-BF16-00002-of-00002.gguf"}));
  EXPECT_EQ(quants_in(files), (std::vector<std::string>{"BF16", "Q4_K_M", "Q8_0"}));  // mmproj is no model
  try {
    pick_quant(files, "o/m", "IQ2_XXS");
    FAIL() << "a missing quant must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no IQ2_XXS file; the repository has: BF16, Q4_K_M, Q8_0"), std::string::npos)
        << e.what();
  }
}

TEST(HubFiles, DefaultsAndIncompleteSplits) {
  // No Q4_K_M and one quant only: that one; several: an error naming them.
  EXPECT_EQ(paths(pick_quant({{"x-Q8_0.gguf", 1, ""}}, "o/m", "")), std::vector<std::string>{"x-Q8_0.gguf"});
  EXPECT_THROW(pick_quant({{"x-Q8_0.gguf", 1, ""}, {"x-Q6_K.gguf", 1, ""}}, "o/m", ""), Error);
  EXPECT_THROW(pick_quant({{"README.md", 1, ""}}, "o/m", ""), Error);
  // A split set with a part missing is refused, not half-fetched.
  EXPECT_THROW(pick_quant({{"x-Q8_0-00001-of-00003.gguf", 1, ""}, {"x-Q8_0-00003-of-00003.gguf", 1, ""}}, "o/m", ""),
               Error);
}

}  // namespace
}  // namespace tandem::hub
