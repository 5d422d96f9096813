// `tandem bench -m MODEL [-p 512] [-n 128] [-d 0] [-r 5] [-t N] [-o md|json|jsonl|csv]`:
// llama-bench's measurements and output, so the two can be read side by side. A pp test
// times one prompt of p random tokens, a tg test n single-token decode steps, each after d
// tokens of context (filled untimed). Field names, test names and the statistics (mean,
// sample stddev of per-repetition tok/s) follow llama-bench.
//
// Speculation (`--spec ngram|draft|mtp|auto`, `-md FILE`, `--draft-max N`), which llama-bench
// does not measure: each tg test then also runs twice on real text (--spec-prompt, or a
// built-in one), greedy after that prompt: "tgN greedy" decodes one token per pass, "tgN
// <method>" speculates; both time the decode only, and the speculative row reports its
// acceptance and the tokens each verify pass gave.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_ops.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "gguf/gguf_model_files.h"
#include "model/model.h"
#include "plan/memory.h"
#include "runtime/engine.h"
#include "runtime/generation.h"
#include "runtime/session.h"

#ifndef TANDEM_BUILD_COMMIT
#define TANDEM_BUILD_COMMIT "unknown"
#endif

namespace tandem::cli {
namespace {

using Json = nlohmann::ordered_json;  // keeps llama-bench's field order

constexpr int kDefaultUbatch = 512;   // llama-bench's default n_ubatch
constexpr uint32_t kTokenSeed = 1234; // fixed: every run feeds the same tokens
constexpr int kMaxListValue = 1 << 24;

struct BenchOptions {
  std::vector<std::string> models;
  std::vector<std::string> hf_repos;  // -hf: models by name, pulled into the cache
  std::vector<std::string> n_prompt{"512"}, n_gen{"128"}, n_depth{"0"}, threads, ubatch{"512"};
  std::vector<std::string> type_k{"f16"}, type_v{"f16"};  // as llama-bench
  int reps = 5;
  std::string output = "md";
  bool warmup = true;
  bool progress = false;
  runtime::PlacementOptions placement;  // one placement for every test (-ngl is a single value here)
  // Placement sweeps: one engine per value (empty: the single placement above).
  std::vector<std::string> n_cpu_moe, vram_budget;
  SpeculativeFlags spec;    // method "none": no speculative rows
  std::string spec_prompt;  // a text file for the speculative rows (empty: kSpecPrompt)
};

// What the speculative rows decode after by default: an instruction a code model answers at
// length (lookup finds little to copy in it; a real drafter guesses well).
constexpr const char* kSpecPrompt =
    "Write a Python module that parses a CSV file of orders (id, customer, amount, date), groups the orders by "
    "customer, and prints each customer's total and average order amount, sorted by total. Include type hints, "
    "docstrings and a main function.\n\n```python\n";

// One value, or a range as llama-bench writes it: "first-last", "first-last+step",
// "first-last*step".
void parse_list_item(std::string_view item, std::string_view flag, int min_value, std::vector<int>& out) {
  auto bad = [&] {
    fail("{}: '{}' is not a number or range (e.g. 512, 128,256 or 128-512*2)", flag, item);
  };
  const char* p = item.data();
  const char* end = item.data() + item.size();
  auto number = [&](bool allow_sign) {
    long long v = 0;
    if (p == end || !(std::isdigit(static_cast<unsigned char>(*p)) || (allow_sign && *p == '-'))) bad();
    auto [next, ec] = std::from_chars(p, end, v);
    if (ec != std::errc()) bad();
    p = next;
    return v;
  };
  const long long first = number(true);  // a sign only here, so that "-5" reads as too small
  long long last = first, step = 1;
  char op = '+';
  if (p != end && *p == '-') {
    ++p;
    last = number(false);
    if (p != end && (*p == '+' || *p == '*')) {
      op = *p++;
      step = number(false);
    }
  }
  if (p != end) bad();
  if (first < min_value) fail("{} must be >= {} (got {})", flag, min_value, first);
  if (std::max(last, step) > kMaxListValue) fail("{}: '{}' is too large (values at most {})", flag, item, kMaxListValue);
  if (last < first || (op == '+' && step < 1) || (op == '*' && (step < 2 || first < 1))) {
    fail("{}: '{}' is an empty or endless range", flag, item);
  }
  for (long long v = first; v <= last; v = op == '+' ? v + step : v * step) {
    out.push_back(static_cast<int>(v));
  }
}

// Each occurrence of the flag may carry a comma list; all occurrences add up.
std::vector<int> parse_int_list(const std::vector<std::string>& args, std::string_view flag, int min_value) {
  std::vector<int> out;
  for (const std::string& arg : args) {
    size_t at = 0;
    while (true) {
      const size_t comma = arg.find(',', at);
      parse_list_item(std::string_view(arg).substr(at, comma - at), flag, min_value, out);
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  if (out.empty()) fail("{}: no values given", flag);
  return out;
}

std::vector<std::string> split_commas(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const std::string& arg : args) {
    size_t at = 0;
    while (true) {
      const size_t comma = arg.find(',', at);
      out.push_back(arg.substr(at, comma - at));
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  return out;
}

// llama.cpp's names for general.file_type (llama_ftype), so model_type reads the same.
std::string file_type_name(uint64_t ftype) {
  static const std::map<uint64_t, std::string> names = {
      {0, "all F32"},        {1, "F16"},           {2, "Q4_0"},          {3, "Q4_1"},
      {7, "Q8_0"},           {8, "Q5_0"},          {9, "Q5_1"},          {10, "Q2_K - Medium"},
      {11, "Q3_K - Small"},  {12, "Q3_K - Medium"}, {13, "Q3_K - Large"}, {14, "Q4_K - Small"},
      {15, "Q4_K - Medium"}, {16, "Q5_K - Small"},  {17, "Q5_K - Medium"}, {18, "Q6_K"},
      {19, "IQ2_XXS - 2.0625 bpw"}, {20, "IQ2_XS - 2.3125 bpw"}, {21, "Q2_K - Small"},
      {22, "IQ3_XS - 3.3 bpw"}, {23, "IQ3_XXS - 3.0625 bpw"}, {24, "IQ1_S - 1.5625 bpw"},
      {25, "IQ4_NL - 4.5 bpw"}, {26, "IQ3_S - 3.4375 bpw"}, {27, "IQ3_S mix - 3.66 bpw"},
      {28, "IQ2_S - 2.5 bpw"}, {29, "IQ2_M - 2.7 bpw"}, {30, "IQ4_XS - 4.25 bpw"},
      {31, "IQ1_M - 1.75 bpw"}, {32, "BF16"}, {36, "TQ1_0 - 1.69 bpw ternary"},
      {37, "TQ2_0 - 2.06 bpw ternary"}, {38, "MXFP4 MoE"}, {39, "NVFP4"}, {40, "Q1_0"}, {41, "Q2_0"},
  };
  const auto it = names.find(ftype);
  return it != names.end() ? it->second : "unknown, may not work";
}

struct ModelInfo {
  std::string filename;
  std::string type;       // "qwen2 0.5B Q4_K - Medium"
  uint64_t size = 0;      // bytes of tensor data
  uint64_t n_params = 0;  // elements of all tensors
  int64_t n_ctx_train = 0;
  int64_t head_dim = 0;
  int64_t n_vocab = 0;
};

ModelInfo describe_model(const std::string& path, const gguf::ModelFiles& files, const model::HParams& hp) {
  ModelInfo info;
  info.filename = path;
  std::map<DType, uint64_t> elements_by_type;
  for (const gguf::TensorInfo* t : files.tensors()) {
    info.size += t->n_bytes;
    info.n_params += t->n_elements;
    if (t->dims.size() >= 2) elements_by_type[t->type] += t->n_elements;
  }
  const gguf::File& f = files.primary();
  std::string size_label;
  if (const gguf::Value* v = f.find("general.size_label"); v && v->get_if<std::string>()) {
    size_label = *v->get_if<std::string>();
  } else if (info.n_params >= 1000000000) {
    size_label = fmt::format("{:.1f}B", info.n_params / 1e9);
  } else if (info.n_params >= 1000000) {
    size_label = fmt::format("{:.0f}M", info.n_params / 1e6);
  } else {
    size_label = fmt::format("{:.0f}K", info.n_params / 1e3);
  }
  std::string ftype;
  if (f.contains("general.file_type")) {
    ftype = file_type_name(f.get_uint("general.file_type"));
  } else {
    // As llama.cpp: without general.file_type, name the type most of the weights have.
    auto most = std::max_element(elements_by_type.begin(), elements_by_type.end(),
                                 [](const auto& a, const auto& b) { return a.second < b.second; });
    ftype = "(guessed) " + (most == elements_by_type.end() ? std::string("unknown")
                                                            : std::string(dtype_name(most->first)));
  }
  info.type = fmt::format("{} {} {}", hp.arch, size_label, ftype);
  info.n_ctx_train = hp.n_ctx_train;
  info.head_dim = hp.head_dim;
  info.n_vocab = hp.n_vocab;
  return info;
}

// As ggml's CPU backend describes itself: the first "model name" of /proc/cpuinfo.
std::string cpu_info() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon == std::string::npos) break;
      const size_t start = line.find_first_not_of(" \t", colon + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  }
  return "unknown";
}

struct TestResult {
  const ModelInfo* model = nullptr;
  int n_prompt = 0, n_gen = 0, n_depth = 0, n_ubatch = 0, n_threads = 0;
  std::string type_k, type_v;
  std::string backends = "CPU";  // "CUDA,CPU" when the placement put layers on the GPU
  std::optional<int> n_cpu_moe;  // set when --n-cpu-moe was swept
  std::string vram_budget;       // set when --vram-budget was swept
  std::string test_time;  // RFC 3339, UTC, when the test started
  std::vector<uint64_t> samples_ns;
  // Speculative rows: "greedy" (the baseline on the same text) or the method; empty for
  // llama-bench's own tests.
  std::string spec;
  runtime::SpeculativeStats spec_stats;  // all repetitions together

  std::string name() const {
    std::string s = n_prompt > 0 ? fmt::format("pp{}", n_prompt) : fmt::format("tg{}", n_gen);
    if (n_depth > 0) s += fmt::format(" @ d{}", n_depth);
    if (!spec.empty()) s += " " + spec;
    if (spec_stats.verify_steps > 0) {
      s += fmt::format(" ({:.0f}% kept, {:.2f}/pass)", 100.0 * spec_stats.acceptance(), spec_stats.tokens_per_step());
    }
    return s;
  }
  std::vector<double> samples_ts() const {
    std::vector<double> ts;
    for (uint64_t ns : samples_ns) ts.push_back(1e9 * (n_prompt + n_gen) / static_cast<double>(ns));
    return ts;
  }
};

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
}

// Sample standard deviation (n - 1), 0 for fewer than two samples, as llama-bench.
double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double sq = 0;
  for (double x : v) sq += (x - m) * (x - m);
  return std::sqrt(sq / static_cast<double>(v.size() - 1));
}

std::vector<double> as_doubles(const std::vector<uint64_t>& v) { return {v.begin(), v.end()}; }

// The fields of one result, llama-bench's names and order (those that mean something here).
// n_batch: tandem has no logical batch limit; it is the tokens given to one feed() call.
Json result_fields(const TestResult& t, const std::string& cpu) {
  const std::vector<double> ns = as_doubles(t.samples_ns), ts = t.samples_ts();
  Json j;
  j["build_commit"] = TANDEM_BUILD_COMMIT;
  j["build_number"] = 0;
  j["cpu_info"] = cpu;
  j["gpu_info"] = "";
  j["backends"] = t.backends;
  j["model_filename"] = t.model->filename;
  j["model_type"] = t.model->type;
  j["model_size"] = t.model->size;
  j["model_n_params"] = t.model->n_params;
  j["n_batch"] = t.n_prompt > 0 ? t.n_prompt : 1;
  j["n_ubatch"] = t.n_ubatch;
  j["n_threads"] = t.n_threads;
  j["type_k"] = t.type_k;
  j["type_v"] = t.type_v;
  j["n_prompt"] = t.n_prompt;
  j["n_gen"] = t.n_gen;
  j["n_depth"] = t.n_depth;
  if (t.n_cpu_moe) j["n_cpu_moe"] = *t.n_cpu_moe;  // only when swept: the fields stay llama-bench's
  if (!t.vram_budget.empty()) j["vram_budget"] = t.vram_budget;
  if (!t.spec.empty()) {  // only on speculative rows: the fields stay llama-bench's
    j["spec"] = t.spec;
    j["spec_drafted"] = t.spec_stats.drafted;
    j["spec_accepted"] = t.spec_stats.accepted;
    j["spec_verify_steps"] = t.spec_stats.verify_steps;
    j["spec_paused_tokens"] = t.spec_stats.paused_tokens;
  }
  j["test_time"] = t.test_time;
  j["avg_ns"] = static_cast<uint64_t>(std::llround(mean(ns)));
  j["stddev_ns"] = static_cast<uint64_t>(std::llround(stddev(ns)));
  j["avg_ts"] = mean(ts);
  j["stddev_ts"] = stddev(ts);
  return j;
}

class Printer {
 public:
  virtual ~Printer() = default;
  virtual void header() {}
  virtual void test(const TestResult& t) = 0;
  virtual void footer() {}
};

class JsonPrinter : public Printer {
 public:
  explicit JsonPrinter(std::string cpu, bool lines) : cpu_(std::move(cpu)), lines_(lines) {}
  void header() override {
    if (!lines_) fmt::print("[");
  }
  void test(const TestResult& t) override {
    Json j = result_fields(t, cpu_);
    j["samples_ns"] = t.samples_ns;
    j["samples_ts"] = t.samples_ts();
    if (lines_) {
      fmt::print("{}\n", j.dump());
    } else {
      // Printed as each test ends (a long run shows progress); indented as one array.
      std::string body = j.dump(2), indented = "  ";
      for (char c : body) {
        indented += c;
        if (c == '\n') indented += "  ";
      }
      fmt::print("{}\n{}", first_ ? "" : ",", indented);
      first_ = false;
    }
    std::fflush(stdout);
  }
  void footer() override {
    if (!lines_) fmt::print("\n]\n");
  }

 private:
  std::string cpu_;
  bool lines_;
  bool first_ = true;
};

class CsvPrinter : public Printer {
 public:
  explicit CsvPrinter(std::string cpu) : cpu_(std::move(cpu)) {}
  void test(const TestResult& t) override {
    const Json j = result_fields(t, cpu_);
    if (first_) {
      std::string names;
      for (const auto& [key, value] : j.items()) names += (names.empty() ? "" : ",") + key;
      fmt::print("{}\n", names);
      first_ = false;
    }
    std::string row;
    for (const auto& [key, value] : j.items()) {
      std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      std::string quoted = "\"";
      for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
      row += (row.empty() ? "" : ",") + quoted + "\"";
    }
    fmt::print("{}\n", row);
    std::fflush(stdout);
  }

 private:
  std::string cpu_;
  bool first_ = true;
};

// llama-bench's table: same columns, widths (negative: left-aligned) and number formats.
class MarkdownPrinter : public Printer {
 public:
  MarkdownPrinter(bool show_ubatch, bool show_n_cpu_moe, bool show_vram) {
    columns_ = {{"model", -30}, {"size", 10}, {"params", 10}, {"backend", -10}, {"threads", 7}};
    if (show_ubatch) columns_.push_back({"n_ubatch", 8});
    if (show_n_cpu_moe) columns_.push_back({"n_cpu_moe", 9});
    if (show_vram) columns_.push_back({"vram", 8});
    columns_.push_back({"test", 15});
    columns_.push_back({"t/s", 20});
  }
  void header() override {
    std::string names = "|", rules = "|";
    for (const auto& [name, width] : columns_) {
      names += " " + pad(name, width) + " |";
      rules += " " + std::string(static_cast<size_t>(std::abs(width) - 1), '-') + (width > 0 ? ":" : "-") + " |";
    }
    fmt::print("{}\n{}\n", names, rules);
  }
  void test(const TestResult& t) override {
    const std::vector<double> ts = t.samples_ts();
    const ModelInfo& m = *t.model;
    std::string row = "|";
    for (const auto& [name, width] : columns_) {
      std::string value;
      if (name == "model") value = m.type;
      if (name == "size") {
        value = m.size < (1ull << 30) ? fmt::format("{:.2f} MiB", m.size / 1048576.0)
                                      : fmt::format("{:.2f} GiB", m.size / 1073741824.0);
      }
      if (name == "params") {
        value = m.n_params < 1000000000 ? fmt::format("{:.2f} M", m.n_params / 1e6)
                                        : fmt::format("{:.2f} B", m.n_params / 1e9);
      }
      if (name == "backend") value = t.backends;
      if (name == "threads") value = std::to_string(t.n_threads);
      if (name == "n_ubatch") value = std::to_string(t.n_ubatch);
      if (name == "n_cpu_moe") value = t.n_cpu_moe ? std::to_string(*t.n_cpu_moe) : "";
      if (name == "vram") value = t.vram_budget;
      if (name == "test") value = t.name();
      if (name == "t/s") value = fmt::format("{:.2f} ± {:.2f}", mean(ts), stddev(ts));
      row += " " + pad(value, width) + " |";
    }
    fmt::print("{}\n", row);
    std::fflush(stdout);
  }
  void footer() override { fmt::print("\nbuild: {} (0)\n", TANDEM_BUILD_COMMIT); }

 private:
  // fmt counts code points, so "±" takes one column as it shows.
  static std::string pad(const std::string& s, int width) {
    return width < 0 ? fmt::format("{:<{}}", s, -width) : fmt::format("{:>{}}", s, width);
  }
  std::vector<std::pair<std::string, int>> columns_;
};

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%FT%TZ", &tm);
  return buf;
}

struct TestPlan {
  int n_prompt = 0, n_gen = 0, n_depth = 0, n_ubatch = 0, n_threads = 0;
  std::string type_k, type_v;
  std::optional<int> n_cpu_moe;
  std::string vram_budget;
};

// Warmup (untimed, as llama-bench: the whole prompt, or one decode step), then per
// repetition: empty the context, fill the depth untimed, time the prompt or the steps.
TestResult result_of(const runtime::Engine& engine, const ModelInfo& info, const TestPlan& plan) {
  TestResult r;
  r.model = &info;
  r.n_prompt = plan.n_prompt;
  r.n_gen = plan.n_gen;
  r.n_depth = plan.n_depth;
  r.n_ubatch = plan.n_ubatch;
  r.n_threads = plan.n_threads;
  r.type_k = plan.type_k;
  r.type_v = plan.type_v;
  r.n_cpu_moe = plan.n_cpu_moe;
  r.vram_budget = plan.vram_budget;
  if (engine.on_gpu()) r.backends = "CUDA,CPU";
  r.test_time = utc_now();
  return r;
}

TestResult run_test(const runtime::Engine& engine, const ModelInfo& info, const TestPlan& plan, int reps, bool warmup,
                    bool progress) {
  TestResult r = result_of(engine, info, plan);

  const int64_t n_ctx = int64_t{plan.n_depth} + plan.n_prompt + plan.n_gen;
  // The workspace never needs more rows than the longest single feed.
  const int64_t widest = std::max<int64_t>({plan.n_prompt, plan.n_depth, 1});
  const model::KvCacheTypes kv{model::parse_kv_cache_type(plan.type_k, "-ctk"), model::parse_kv_cache_type(plan.type_v, "-ctv")};
  runtime::Session session(engine.model(), engine.backends(), n_ctx, std::min<int64_t>(plan.n_ubatch, widest), kv);
  std::mt19937 rng(kTokenSeed);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(info.n_vocab - 1));
  auto random_tokens = [&](int64_t n) {
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (int32_t& t : tokens) t = pick(rng);
    return tokens;
  };
  auto note = [&](const std::string& what) {
    if (progress) fmt::print(stderr, "bench: {} {}: {}\n", info.filename, r.name(), what);
  };

  if (warmup) {
    note("warmup");
    session.reset();
    session.feed(random_tokens(plan.n_prompt > 0 ? plan.n_prompt : 1));
  }
  for (int rep = 0; rep < reps; ++rep) {
    session.reset();
    if (plan.n_depth > 0) {
      note(fmt::format("depth {}/{}", rep + 1, reps));
      session.feed(random_tokens(plan.n_depth));
    }
    note(fmt::format("run {}/{}", rep + 1, reps));
    const std::vector<int32_t> tokens = random_tokens(plan.n_prompt > 0 ? plan.n_prompt : plan.n_gen);
    const auto t0 = std::chrono::steady_clock::now();
    if (plan.n_prompt > 0) {
      session.feed(tokens);
    } else {
      for (const int32_t& t : tokens) session.feed(std::span<const int32_t>(&t, 1));
    }
    const auto t1 = std::chrono::steady_clock::now();
    r.samples_ns.push_back(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
  }
  return r;
}

// A speculative row: per repetition, a fresh context, the prompt fed untimed, then n tokens
// decoded greedily (the end of generation ignored), timed; with `spec` null, one token per
// forward pass (the baseline on the same text).
TestResult run_spec_test(runtime::Engine& engine, const ModelInfo& info, const TestPlan& plan, int reps, bool warmup,
                         const std::vector<int32_t>& prompt, SpeculativeSetup* spec, const std::string& label) {
  TestResult r = result_of(engine, info, plan);
  r.spec = label;
  const int64_t guesses = spec != nullptr ? spec->speculation.draft_max : 0;
  const int64_t n_ctx = static_cast<int64_t>(prompt.size()) + plan.n_gen + guesses + 1;
  if (n_ctx > info.n_ctx_train) {
    fail("--spec-prompt: {} tokens + {} generated exceed the model's context of {}", prompt.size(), plan.n_gen,
         info.n_ctx_train);
  }
  const model::KvCacheTypes kv{model::parse_kv_cache_type(plan.type_k, "-ctk"), model::parse_kv_cache_type(plan.type_v, "-ctv")};
  runtime::Session session(engine.model(), engine.backends(), n_ctx, std::max<int64_t>(plan.n_ubatch, guesses + 1), kv);
  runtime::GenerationParams gp;
  gp.sampling.temperature = 0;
  gp.max_tokens = plan.n_gen;
  gp.ignore_eos = true;
  runtime::Speculation* speculation = spec != nullptr ? &spec->speculation : nullptr;
  for (int rep = (warmup ? -1 : 0); rep < reps; ++rep) {
    session.reset();
    if (rep == 0 && speculation != nullptr) speculation->stats = {};  // the timed repetitions' counts only
    runtime::Generation generation(engine.tokenizer(), engine.end_of_generation(), gp, engine.hparams().n_vocab);
    const runtime::GenerationStats st =
        runtime::generate(session, generation, prompt, [](const std::string&) { return true; }, speculation);
    if (rep < 0) continue;  // the warmup
    r.samples_ns.push_back(static_cast<uint64_t>(std::llround(st.generation_seconds * 1e9)));
  }
  if (speculation != nullptr) r.spec_stats = speculation->stats;
  return r;
}

void check_kv_types(const std::vector<std::string>& types, std::string_view flag) {
  for (const std::string& t : types) model::parse_kv_cache_type(t, flag);
}

void run_bench(const BenchOptions& o) {
  std::vector<std::string> model_paths = split_commas(o.models);
  for (const std::string& ref : split_commas(o.hf_repos)) model_paths.push_back(pull_model(ref));
  if (model_paths.empty()) fail("no model given (-m FILE or -hf OWNER/REPO[:QUANT])");
  const std::vector<int> prompts = parse_int_list(o.n_prompt, "-p", 0);
  const std::vector<int> gens = parse_int_list(o.n_gen, "-n", 0);
  const std::vector<int> depths = parse_int_list(o.n_depth, "-d", 0);
  const std::vector<int> ubatches = parse_int_list(o.ubatch, "-ub", 1);
  const std::vector<int> threads =
      o.threads.empty() ? std::vector<int>{default_thread_count()} : parse_int_list(o.threads, "-t", 1);
  if (o.reps < 1) fail("-r must be >= 1 (got {})", o.reps);
  const std::vector<std::string> type_k = split_commas(o.type_k), type_v = split_commas(o.type_v);
  check_kv_types(type_k, "-ctk");
  check_kv_types(type_v, "-ctv");
  if (std::all_of(prompts.begin(), prompts.end(), [](int p) { return p == 0; }) &&
      std::all_of(gens.begin(), gens.end(), [](int n) { return n == 0; })) {
    fail("nothing to run: every -p and -n value is 0");
  }

  std::unique_ptr<Printer> printer;
  const std::string cpu = cpu_info();
  // Placement sweeps: each value opens its own engine (a placement is fixed at load).
  std::vector<std::optional<int>> cpu_moe_values{std::nullopt};
  if (!o.n_cpu_moe.empty()) {
    cpu_moe_values.clear();
    for (int v : parse_int_list(o.n_cpu_moe, "--n-cpu-moe", 0)) cpu_moe_values.push_back(v);
  }
  std::vector<std::string> vram_values{""};
  if (!o.vram_budget.empty()) {
    vram_values = split_commas(o.vram_budget);
    for (const std::string& v : vram_values) plan::parse_size(v, "--vram-budget");
  }
  if (o.output == "md") {
    printer = std::make_unique<MarkdownPrinter>(ubatches != std::vector<int>{kDefaultUbatch}, !o.n_cpu_moe.empty(),
                                                !o.vram_budget.empty());
  }
  if (o.output == "json") printer = std::make_unique<JsonPrinter>(cpu, false);
  if (o.output == "jsonl") printer = std::make_unique<JsonPrinter>(cpu, true);
  if (o.output == "csv") printer = std::make_unique<CsvPrinter>(cpu);
  if (!printer) fail("-o: unknown output format '{}' (md, json, jsonl or csv)", o.output);

  // Open every model and check every test fits its context before anything runs.
  // (Each header is mapped only while it is checked: the engine maps the model itself.)
  std::vector<ModelInfo> infos;
  for (const std::string& path : model_paths) {
    const gguf::ModelFiles files = gguf::ModelFiles::open(path);
    infos.push_back(describe_model(path, files, model::HParams::from_gguf(files)));
    const ModelInfo& info = infos.back();
    const int depth = *std::max_element(depths.begin(), depths.end());
    const int longest = std::max(*std::max_element(prompts.begin(), prompts.end()),
                                 *std::max_element(gens.begin(), gens.end()));
    for (const std::string& tk : type_k) {
      for (const std::string& tv : type_v) {
        model::check_kv_cache_types({model::parse_kv_cache_type(tk, "-ctk"), model::parse_kv_cache_type(tv, "-ctv")},
                                    info.head_dim);
      }
    }
    if (int64_t{depth} + longest > info.n_ctx_train) {
      fail("{}: depth {} + {} test tokens = {} exceed the model's context of {} tokens", path, depth, longest,
           int64_t{depth} + longest, info.n_ctx_train);
    }
  }

  printer->header();
  // One engine per model and placement, placed for its largest test (context and
  // micro-batch); a thread sweep swaps only its CPU pool.
  auto run_placement = [&](size_t m, const std::optional<int>& cpu_moe, const std::string& vram) {
    runtime::EngineOptions eo;
    eo.model_path = model_paths[m];
    eo.threads = threads.front();
    eo.kv = {model::parse_kv_cache_type(type_k.front(), "-ctk"), model::parse_kv_cache_type(type_v.front(), "-ctv")};
    eo.placement = o.placement;
    if (cpu_moe) eo.placement.n_cpu_moe = *cpu_moe;
    if (!vram.empty()) eo.placement.vram_budget = vram;
    eo.plan_ctx = int64_t{*std::max_element(depths.begin(), depths.end())} +
                  std::max(*std::max_element(prompts.begin(), prompts.end()),
                           *std::max_element(gens.begin(), gens.end()));
    eo.plan_ubatch = *std::max_element(ubatches.begin(), ubatches.end());
    eo.quiet = !o.progress;
    eo.prepare = false;  // each test's warmup makes the weights ready, as llama-bench's does
    eo.load_progress = load_progress_bar();
    eo.placement.mtp = o.spec.method != "none" && o.spec.may_use_mtp();
    runtime::Engine engine(eo);
    // Speculative rows: the drafter and the prompt, opened once per engine.
    std::optional<SpeculativeSetup> spec;
    std::vector<int32_t> spec_prompt;
    if (o.spec.method != "none") {
      const int longest = *std::max_element(gens.begin(), gens.end());
      std::string text = kSpecPrompt;
      if (!o.spec_prompt.empty()) text = read_text_file(o.spec_prompt, "--spec-prompt");
      text::EncodeOptions enc;
      enc.add_special = true;
      spec_prompt = engine.tokenizer().encode(text, enc);
      if (spec_prompt.empty()) fail("--spec-prompt {}: the text is empty", o.spec_prompt);
      spec.emplace(SpeculativeSetup::open(o.spec, engine, static_cast<int64_t>(spec_prompt.size()) + longest + 65));
      if (!spec->on()) fail("--spec {}: this model has nothing to speculate with (no MTP block, no -md)", o.spec.method);
    }
    for (int ub : ubatches) {
      for (const std::string& tk : type_k) {
        for (const std::string& tv : type_v) {
          for (int nt : threads) {
            engine.set_threads(nt);
            for (int d : depths) {
              auto run = [&](int p, int n) {
                const TestPlan plan{p, n, d, ub, nt, tk, tv, cpu_moe, vram};
                printer->test(run_test(engine, infos[m], plan, o.reps, o.warmup, o.progress));
              };
              for (int p : prompts) {
                if (p > 0) run(p, 0);
              }
              for (int n : gens) {
                if (n > 0) run(0, n);
              }
              if (spec && d == 0) {
                for (int n : gens) {
                  if (n <= 0) continue;
                  const TestPlan plan{0, n, 0, ub, nt, tk, tv, cpu_moe, vram};
                  printer->test(run_spec_test(engine, infos[m], plan, o.reps, o.warmup, spec_prompt, nullptr, "greedy"));
                  printer->test(run_spec_test(engine, infos[m], plan, o.reps, o.warmup, spec_prompt, &*spec,
                                              runtime::spec_method_name(spec->method)));
                }
              }
            }
          }
        }
      }
    }
  };
  for (size_t m = 0; m < model_paths.size(); ++m) {
    for (const std::optional<int>& cpu_moe : cpu_moe_values) {
      for (const std::string& vram : vram_values) run_placement(m, cpu_moe, vram);
    }
  }
  printer->footer();
}

}  // namespace

void register_bench(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("bench", "Prompt and generation speed, measured and printed as llama-bench does");
  auto o = std::make_shared<BenchOptions>();
  // Lists: each occurrence takes one value, which may be a comma list or a range (a-b, a-b+s, a-b*s).
  auto list = [&](const std::string& names, std::vector<std::string>& into, const std::string& help) {
    return cmd->add_option(names, into, help)->allow_extra_args(false)->type_name("LIST");
  };
  list("-m,--model", o->models, "GGUF model file(s) (repeatable or comma list)");
  list("--hf-repo", o->hf_repos, "-hf OWNER/REPO[:QUANT]: model(s) by name from the hub, pulled when missing");
  list("-p,--n-prompt", o->n_prompt, "Prompt lengths for pp tests (0: none)")->capture_default_str();
  list("-n,--n-gen", o->n_gen, "Generated tokens for tg tests (0: none)")->capture_default_str();
  list("-d,--n-depth", o->n_depth, "Tokens already in the context before each test")->capture_default_str();
  list("-t,--threads", o->threads, "CPU threads, a list runs each (default: the usable cores)");
  list("--ubatch-size", o->ubatch, "Prompt tokens per forward pass (-ub)")->capture_default_str();
  list("--cache-type-k", o->type_k, "KV cache types for K (-ctk): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1")->capture_default_str();
  list("--cache-type-v", o->type_v, "KV cache types for V (-ctv)")->capture_default_str();
  cmd->add_option("-r,--repetitions", o->reps, "Timed runs per test")->capture_default_str();
  cmd->add_option("-o,--output", o->output, "Output format: md, json, jsonl or csv")->capture_default_str();
  cmd->add_flag("--warmup,!--no-warmup", o->warmup, "One untimed run before each test (default: on)");
  cmd->add_flag("--progress", o->progress, "Say on stderr what is running");
  add_placement_options(cmd, o->placement);
  // These two take lists here (a sweep, one engine per value), as -ncmoe does in llama-bench.
  cmd->remove_option(cmd->get_option("--n-cpu-moe"));
  cmd->remove_option(cmd->get_option("--vram-budget"));
  list("--n-cpu-moe", o->n_cpu_moe, "-ncmoe N[,N...]: routed experts of the first N layers on the CPU, per value");
  list("--vram-budget", o->vram_budget, "VRAM budgets to plan for, one engine each (e.g. 8GiB,12GiB,16GiB)");
  o->spec.method = "none";  // bench measures speculation only when asked (--spec, or -md alone)
  o->spec.add_to(cmd);
  cmd->add_option("--spec-prompt", o->spec_prompt,
                  "Text file the speculative rows decode after (default: a coding request)");
  cmd->callback([o] {
    if (o->spec.method == "none" && !o->spec.draft_model.empty()) o->spec.method = "draft";
    run_bench(*o);
  });
}

}  // namespace tandem::cli
