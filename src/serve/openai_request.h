// OpenAI request bodies (chat completions, completions) checked field by field and turned
// into what the runtime runs: chat inputs for the template and generation parameters.
// Unknown values of known fields, wrong types and unsupported features (n > 1, images)
// are 400s naming the field, never silently ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/generation.h"
#include "text/chat_template.h"

namespace tandem::serve {

struct RequestLimits {
  int64_t n_vocab = 0;
  int64_t max_tokens_cap = 0;  // the context per slot
};

struct CompletionRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  std::string model;
  runtime::GenerationParams params;
  bool logprobs = false;
  // chat
  text::ChatInputs chat_inputs;
  nlohmann::json tools = nlohmann::json::array();
  std::string tool_choice = "auto";  // auto, none, required, or a function name (forced)
  // completion
  std::string prompt_text;
  std::vector<int32_t> prompt_tokens;  // when the prompt came as token ids
  bool echo = false;
};

// `seed` fills params.sampling.seed when the request has none.
CompletionRequest parse_chat_request(const nlohmann::json& body, const RequestLimits& limits, uint64_t seed);
CompletionRequest parse_completion_request(const nlohmann::json& body, const RequestLimits& limits, uint64_t seed);

}  // namespace tandem::serve
