// Constructors of the architecture files, for load_model (model_registry.cpp).
#pragma once

#include <memory>

#include "model/model.h"

namespace tandem::model {

std::unique_ptr<Model> make_qwen3_family(const gguf::ModelFiles& files);   // qwen2, qwen3, qwen3moe
std::unique_ptr<Model> make_qwen35_family(const gguf::ModelFiles& files);  // qwen35, qwen35moe

}  // namespace tandem::model
