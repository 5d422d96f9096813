// Loading: every malformed or mismatched model is refused with a message naming what is wrong.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/model.h"
#include "model/tiny_model.h"
#include "support/test_support.h"

namespace tandem::model {
namespace {

using testing::TinySpec;
using testing::write_tiny_model;

std::string load_error(const TinySpec& spec, const std::string& name) {
  const auto path = testing::scratch_dir("model_loading_" + name) / "m.gguf";
  write_tiny_model(path, spec);
  try {
    const auto files = gguf::ModelFiles::open(path);
    load_model(files);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded)";
}

TEST(ModelLoading, ValidTinyModelsLoad) {
  for (const char* arch : {"qwen2", "qwen3", "qwen3moe"}) {
    TinySpec spec;
    spec.arch = arch;
    EXPECT_EQ(load_error(spec, arch), "(loaded)") << arch;
  }
}

TEST(ModelLoading, MissingTensor) {
  TinySpec spec;
  spec.edit = [](std::string& name, std::vector<int64_t>&) { return name != "blk.1.attn_k.weight"; };
  EXPECT_NE(load_error(spec, "missing").find("required tensor 'blk.1.attn_k.weight' is missing"), std::string::npos);
}

TEST(ModelLoading, WrongShape) {
  TinySpec spec;
  spec.edit = [](std::string& name, std::vector<int64_t>& dims) {
    if (name == "blk.0.ffn_up.weight") dims[1] = 95;
    return true;
  };
  EXPECT_NE(load_error(spec, "shape").find("tensor 'blk.0.ffn_up.weight' has shape [64, 95], expected [64, 96]"),
            std::string::npos);
}

TEST(ModelLoading, UnsupportedArchitecture) {
  TinySpec spec;
  spec.arch = "gpt9";
  EXPECT_NE(load_error(spec, "arch").find("architecture 'gpt9' is not supported"), std::string::npos);
}

TEST(ModelLoading, QwenWithoutQkNormIsRefusedAsQwen3) {
  TinySpec spec;  // qwen3 needs attn_q_norm / attn_k_norm
  spec.edit = [](std::string& name, std::vector<int64_t>&) { return name.find("attn_q_norm") == std::string::npos; };
  EXPECT_NE(load_error(spec, "qknorm").find("'blk.0.attn_q_norm.weight' is missing"), std::string::npos);
}

TEST(ModelLoading, ExtraTensorsAreReportedNotFatal) {
  const auto path = testing::scratch_dir("model_loading_extra") / "m.gguf";
  TinySpec spec;
  spec.arch = "qwen2";
  spec.edit = [](std::string& name, std::vector<int64_t>&) {
    if (name == "blk.1.attn_q.bias") name = "blk.1.mystery.bias";  // optional bias -> unknown tensor
    return true;
  };
  write_tiny_model(path, spec);
  const auto files = gguf::ModelFiles::open(path);
  const auto model = load_model(files);
  EXPECT_EQ(model->unused_tensors(), std::vector<std::string>{"blk.1.mystery.bias"});
}

TEST(ModelLoading, RenamedRequiredTensor) {
  TinySpec spec;
  spec.edit = [](std::string& name, std::vector<int64_t>&) {
    if (name == "output_norm.weight") name = "rope_freqs.weight";  // unknown name in place of a required one
    return true;
  };
  EXPECT_NE(load_error(spec, "renamed").find("'output_norm.weight' is missing"), std::string::npos);
}

}  // namespace
}  // namespace tandem::model
