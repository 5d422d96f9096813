#include "cli/options.h"

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "grammar/json_schema.h"
#include "hub/model_hub.h"

namespace tandem::cli {

std::function<void(uint64_t, uint64_t)> load_progress_bar() {
  if (!isatty(STDERR_FILENO)) return {};
  return [](uint64_t done, uint64_t total) {
    const int width = 40, filled = total ? static_cast<int>(width * done / total) : width;
    fmt::print(stderr, "\rloading [{:=<{}}{: <{}}] {:3d}% ({:.0f}/{:.0f} MiB)", "", filled, "", width - filled,
               total ? static_cast<int>(100 * done / total) : 100, done / 1048576.0, total / 1048576.0);
    if (done == total) fmt::print(stderr, "\n");
  };
}

void KvCacheOptions::add_to(CLI::App* cmd) {
  cmd->add_option("--cache-type-k", k, "KV cache type for K (-ctk): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1")
      ->capture_default_str();
  cmd->add_option("--cache-type-v", v, "KV cache type for V (-ctv): as for K")->capture_default_str();
}

model::KvCacheTypes KvCacheOptions::types() const {
  return {model::parse_kv_cache_type(k, "-ctk"), model::parse_kv_cache_type(v, "-ctv")};
}

void add_placement_options(CLI::App* cmd, runtime::PlacementOptions& o) {
  cmd->add_option("--vram-budget", o.vram_budget,
                  "VRAM the plan may use, reserve included: 12GiB, 12G, 12000MiB, 512M, 12GB, or bytes\n"
                  "(default: CUDA0's free memory; 0 without a GPU)");
  cmd->add_option("--n-gpu-layers", o.n_gpu_layers,
                  "-ngl N as llama.cpp: the last N layers, counting the output head as the last one, on\n"
                  "the GPU (99: all); replaces the automatic placement");
  cmd->add_flag("--cpu-moe", o.cpu_moe, "-cmoe: keep every routed expert tensor on the CPU (as llama.cpp)");
  cmd->add_option("--n-cpu-moe", o.n_cpu_moe, "-ncmoe N: keep the routed experts of the first N layers on the CPU");
  cmd->add_option("--override-tensor", o.overrides,
                  "-ot REGEX=DEVICE[,...] as llama.cpp: tensors whose name matches go to DEVICE (CPU or\n"
                  "CUDA0); repeatable; the first matching rule wins")
      ->take_all()
      ->allow_extra_args(false);
  cmd->add_option("--expert-streaming", o.expert_streaming,
                  "Long prompts on a GPU whose layers' routed experts stay on the CPU: stream those\n"
                  "experts' weights to the GPU when that is faster than the CPU (auto: decided per layer\n"
                  "from measured speeds, with GPU room only the placement leaves unused; on: always, room\n"
                  "set aside first; off: never)")
      ->capture_default_str();
  cmd->add_option("--placement", o.placement,
                  "auto: the GPU filled by value per byte (default); layers: whole layers from the first\n"
                  "while they fit (the plain layer split baseline)")
      ->capture_default_str();
}

std::string pull_model(const std::string& ref) {
  hub::PullOptions o;
  o.progress = isatty(STDERR_FILENO);
  return hub::pull(hub::parse_model_ref(ref), o).string();
}

void EngineFlags::add_to(CLI::App* cmd, bool with_placement) {
  auto* m = cmd->add_option("-m,--model", model, "GGUF model file (any part of a split model)");
  auto* hf = cmd->add_option("--hf-repo", hf_repo,
                             "-hf OWNER/REPO[:QUANT]: a model by name from the Hugging Face hub (or $HF_ENDPOINT),\n"
                             "pulled into the cache when missing (quant default Q4_K_M)");
  m->excludes(hf);
  hf->excludes(m);
  cmd->add_option("-t,--threads", threads, "CPU threads (0: the usable cores: affinity, cgroup quota, one per SMT pair)")->capture_default_str();
  kv.add_to(cmd);
  if (with_placement) add_placement_options(cmd, placement);
}

std::string EngineFlags::model_path() const {
  if (!hf_repo.empty()) return pull_model(hf_repo);
  if (model.empty()) fail("no model given: -m FILE or -hf OWNER/REPO[:QUANT]");
  return model;
}

runtime::EngineOptions EngineFlags::engine_options(int64_t plan_ctx, int64_t ubatch) const {
  runtime::EngineOptions e;
  e.model_path = model_path();
  e.threads = threads;
  e.kv = kv.types();
  e.placement = placement;
  e.plan_ctx = plan_ctx;
  e.plan_ubatch = ubatch;
  e.load_progress = load_progress_bar();
  return e;
}

void SpeculativeFlags::add_to(CLI::App* cmd) {
  cmd->add_option("--spec", method,
                  "Speculative decoding: auto (a draft model when -md is given, else the file's MTP block when\n"
                  "it has one), none, ngram (guesses from earlier text in the context), draft (-md), mtp (the\n"
                  "file's own MTP block, Qwen3.5)")
      ->capture_default_str();
  cmd->add_option("--model-draft", draft_model, "-md FILE: a small model with the same vocabulary that guesses ahead");
  cmd->add_option("--draft-max", draft_max,
                  "Guesses checked per forward pass at most (0: 16 for ngram, 6 for a draft model, 2 for MTP)")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  cmd->add_option("--draft-min", draft_min, "Fewer guesses than this: decode one token instead")->capture_default_str()
      ->check(CLI::Range(0, 64));
  cmd->add_option("--draft-p-min", draft_p_min, "The draft model stops guessing below this probability")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--spec-ngram-min", ngram_min, "Shortest n-gram the lookup matches")->capture_default_str()
      ->check(CLI::Range(1, 16));
  cmd->add_option("--spec-ngram-max", ngram_max, "Longest n-gram the lookup matches")->capture_default_str()
      ->check(CLI::Range(1, 16));
}

SpeculativeSetup SpeculativeSetup::open(const SpeculativeFlags& f, runtime::Engine& target, int64_t n_ctx) {
  SpeculativeSetup s;
  const runtime::SpecMethod method = s.method = f.resolve(target);
  s.speculation.draft_max = f.draft_max_for(method);
  s.speculation.draft_min = f.draft_min;
  if (method == runtime::SpecMethod::Ngram) {
    s.drafter = std::make_unique<runtime::NgramDrafter>(f.ngram_min, f.ngram_max);
  } else if (method == runtime::SpecMethod::Mtp) {
    s.drafter = std::make_unique<runtime::MtpDrafter>(target, n_ctx);
  } else if (method == runtime::SpecMethod::Draft) {
    s.draft_engine = runtime::open_draft_engine(target, f.draft_model, n_ctx, load_progress_bar());
    s.drafter = std::make_unique<runtime::ModelDrafter>(*s.draft_engine, target.tokenizer(),
                                                        target.hparams().n_vocab, n_ctx, f.draft_p_min);
  }
  s.speculation.drafter = s.drafter.get();
  return s;
}

std::string SpeculativeSetup::report() const {
  if (!on()) return {};
  const runtime::SpeculativeStats& st = speculation.stats;
  return fmt::format(
      "speculative: {} verify passes, {} guesses, {} accepted ({:.1f}%), {:.2f} tokens per pass, {:.2f} s guessing{}",
      st.verify_steps, st.drafted, st.accepted, 100.0 * st.acceptance(), st.tokens_per_step(), st.draft_seconds,
      st.paused_tokens > 0 ? fmt::format("; {} tokens decoded without guessing (acceptance too low to pay)",
                                         st.paused_tokens)
                           : "");
}

std::string read_text_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read '{}'", what, path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void GrammarFlags::add_to(CLI::App* cmd) {
  cmd->add_option("--grammar", grammar, "Constrain the output to this GBNF grammar (start rule 'root')");
  cmd->add_option("--grammar-file", grammar_file, "Constrain the output to the GBNF grammar in this file");
  cmd->add_option("-j,--json-schema", json_schema,
                  "Constrain the output to JSON valid under this JSON Schema (text, or @FILE)");
}

std::shared_ptr<const grammar::Grammar> GrammarFlags::compile(bool leading_space) const {
  const int given = !grammar.empty() + !grammar_file.empty() + !json_schema.empty();
  if (given == 0) return nullptr;
  if (given > 1) fail("give at most one of --grammar, --grammar-file and --json-schema");
  std::string gbnf, flag;
  if (!json_schema.empty()) {
    flag = "--json-schema";
    const std::string text = json_schema[0] == '@' ? read_text_file(json_schema.substr(1), "--json-schema") : json_schema;
    const auto schema = nlohmann::ordered_json::parse(text, nullptr, false);
    if (schema.is_discarded()) fail("--json-schema: not valid JSON");
    try {
      gbnf = grammar::json_schema_to_gbnf(schema);
    } catch (const Error& e) {
      fail("--json-schema: {}", e.what());
    }
  } else {
    flag = grammar.empty() ? "--grammar-file" : "--grammar";
    gbnf = grammar.empty() ? read_text_file(grammar_file, "--grammar-file") : grammar;
  }
  try {
    return grammar::compile(gbnf, leading_space);
  } catch (const Error& e) {
    fail("{}: {}", flag, e.what());
  }
}

}  // namespace tandem::cli
