// `tandem inspect FILE [--json] [--full]`: what a GGUF model holds, read from the header
// only (tensor data is mapped, never touched), so a 20 GB file takes milliseconds.
#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "gguf/gguf_model_files.h"

namespace tandem::cli {
namespace {

using nlohmann::json;
using gguf::Array;
using gguf::Value;

constexpr size_t kSummaryItems = 8;  // arrays longer than this are summarised unless --full

json array_to_json(const Array& array, bool full) {
  const size_t n = array.size();
  const size_t shown = full ? n : std::min(n, kSummaryItems);
  json items = json::array();
  std::visit(
      [&](const auto& v) {
        using T = typename std::decay_t<decltype(v)>::value_type;
        for (size_t i = 0; i < shown; ++i) {
          if constexpr (std::is_same_v<T, Array>) {
            items.push_back(array_to_json(v[i], full));
          } else if constexpr (std::is_same_v<T, bool>) {
            items.push_back(static_cast<bool>(v[i]));
          } else {
            items.push_back(v[i]);
          }
        }
      },
      array.items);
  if (shown == n) return items;
  return json{{"element_type", gguf::value_type_name(array.element_type())},
              {"count", n},
              {"head", std::move(items)}};
}

json value_to_json(const Value& value, bool full) {
  return std::visit(
      [full](const auto& v) -> json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Array>) {
          return array_to_json(v, full);
        } else {
          return json(v);
        }
      },
      value.storage());
}

// One line for the text report: scalars in full, long strings and arrays shortened.
std::string value_to_text(const Value& value) {
  std::string text;
  if (const auto* s = value.get_if<std::string>()) {
    text = json(*s).dump(-1, ' ', false, json::error_handler_t::replace);
  } else {
    text = value_to_json(value, false).dump(-1, ' ', false, json::error_handler_t::replace);
  }
  constexpr size_t kMaxChars = 100;
  if (text.size() > kMaxChars) text = text.substr(0, kMaxChars) + fmt::format("... ({} chars)", text.size());
  return text;
}

std::string shape_text(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", dims[i]);
  return s + "]";
}

std::string human_bytes(uint64_t bytes) {
  if (bytes >= (1ull << 30)) return fmt::format("{:.2f} GiB", bytes / 1073741824.0);
  if (bytes >= (1ull << 20)) return fmt::format("{:.2f} MiB", bytes / 1048576.0);
  if (bytes >= (1ull << 10)) return fmt::format("{:.2f} KiB", bytes / 1024.0);
  return fmt::format("{} B", bytes);
}

struct TypeTotals {
  uint64_t tensors = 0;
  uint64_t elements = 0;
  uint64_t bytes = 0;
};

json tokenizer_summary(const gguf::File& file) {
  json t = json::object();
  auto string_key = [&](const char* key, const char* field) {
    if (const auto* v = file.find(key); v && v->get_if<std::string>()) t[field] = *v->get_if<std::string>();
  };
  auto count_key = [&](const char* key, const char* field) {
    if (const auto* v = file.find(key); v && v->array()) t[field] = v->array()->size();
  };
  auto id_key = [&](const char* key, const char* field) {
    uint64_t id = 0;
    if (const auto* v = file.find(key); v && v->to_u64(id)) t[field] = id;
  };
  auto bool_key = [&](const char* key, const char* field) {
    if (const auto* v = file.find(key); v && v->get_if<bool>()) t[field] = *v->get_if<bool>();
  };
  string_key("tokenizer.ggml.model", "model");
  string_key("tokenizer.ggml.pre", "pre");
  count_key("tokenizer.ggml.tokens", "n_tokens");
  count_key("tokenizer.ggml.merges", "n_merges");
  id_key("tokenizer.ggml.bos_token_id", "bos_token_id");
  id_key("tokenizer.ggml.eos_token_id", "eos_token_id");
  id_key("tokenizer.ggml.eot_token_id", "eot_token_id");
  id_key("tokenizer.ggml.padding_token_id", "padding_token_id");
  id_key("tokenizer.ggml.unknown_token_id", "unknown_token_id");
  bool_key("tokenizer.ggml.add_bos_token", "add_bos_token");
  bool_key("tokenizer.ggml.add_eos_token", "add_eos_token");
  if (const auto* v = file.find("tokenizer.chat_template"); v && v->get_if<std::string>()) {
    t["chat_template_bytes"] = v->get_if<std::string>()->size();
  }
  return t;
}

void run_inspect(const std::string& path, bool as_json, bool full) {
  const gguf::ModelFiles model = gguf::ModelFiles::open(path);
  const gguf::File& primary = model.primary();

  std::map<std::string, TypeTotals> per_type;
  uint64_t n_params = 0, tensor_bytes = 0;
  for (const gguf::TensorInfo* t : model.tensors()) {
    TypeTotals& totals = per_type[std::string(dtype_name(t->type))];
    ++totals.tensors;
    totals.elements += t->n_elements;
    totals.bytes += t->n_bytes;
    n_params += t->n_elements;
    tensor_bytes += t->n_bytes;
  }
  const gguf::Value* arch_value = primary.find("general.architecture");
  const std::string architecture =
      arch_value && arch_value->get_if<std::string>() ? *arch_value->get_if<std::string>() : "";

  if (as_json) {
    json out;
    out["file"] = path;
    out["parts"] = json::array();
    for (const gguf::File& part : model.parts()) {
      out["parts"].push_back({{"path", part.name()}, {"version", part.version()},
                              {"alignment", part.alignment()}, {"data_offset", part.data_offset()},
                              {"file_bytes", part.file_size()}, {"n_tensors", part.tensors().size()}});
    }
    out["version"] = primary.version();
    out["architecture"] = architecture;
    out["n_params"] = n_params;
    out["n_tensors"] = model.tensors().size();
    out["tensor_bytes"] = tensor_bytes;
    json metadata = json::array();
    for (const gguf::MetadataEntry& e : primary.metadata()) {
      json entry = {{"key", e.key}, {"type", gguf::value_type_name(e.value.type())},
                    {"value", value_to_json(e.value, full)}};
      if (const Array* a = e.value.array()) {
        entry["element_type"] = gguf::value_type_name(a->element_type());
        entry["count"] = a->size();
      }
      metadata.push_back(std::move(entry));
    }
    out["metadata"] = std::move(metadata);
    json tensors = json::array();
    for (size_t p = 0; p < model.parts().size(); ++p) {
      for (const gguf::TensorInfo& t : model.parts()[p].tensors()) {
        tensors.push_back({{"name", t.name}, {"type", dtype_name(t.type)}, {"shape", t.dims},
                           {"n_elements", t.n_elements}, {"bytes", t.n_bytes},
                           {"offset", t.file_offset}, {"part", p}});
      }
    }
    out["tensors"] = std::move(tensors);
    json types = json::object();
    for (const auto& [name, totals] : per_type) {
      types[name] = {{"tensors", totals.tensors}, {"elements", totals.elements}, {"bytes", totals.bytes}};
    }
    out["bytes_per_type"] = std::move(types);
    out["tokenizer"] = tokenizer_summary(primary);
    fmt::print("{}\n", out.dump(1, ' ', false, json::error_handler_t::replace));
    return;
  }

  fmt::print("file:          {}", path);
  if (model.parts().size() > 1) fmt::print(" ({} parts)", model.parts().size());
  fmt::print("\nformat:        GGUF v{}, alignment {}, {} on disk\n", primary.version(),
             primary.alignment(), human_bytes(model.total_file_bytes()));
  fmt::print("architecture:  {}\n", architecture.empty() ? "(none)" : architecture);
  if (const auto* name = primary.find("general.name"); name && name->get_if<std::string>()) {
    fmt::print("name:          {}\n", *name->get_if<std::string>());
  }
  fmt::print("parameters:    {} ({:.3f} B)\n", n_params, n_params / 1e9);
  fmt::print("tensors:       {} holding {}\n", model.tensors().size(), human_bytes(tensor_bytes));
  const json tok = tokenizer_summary(primary);
  if (!tok.empty()) fmt::print("tokenizer:     {}\n", tok.dump(-1, ' ', false, json::error_handler_t::replace));

  fmt::print("\nmetadata ({} keys):\n", primary.metadata().size());
  for (const gguf::MetadataEntry& e : primary.metadata()) {
    fmt::print("  {:<44} {:<22} {}\n", e.key, gguf::describe_type(e.value), value_to_text(e.value));
  }
  fmt::print("\nbytes per type:\n");
  for (const auto& [name, totals] : per_type) {
    fmt::print("  {:<8} {:>6} tensors {:>14} params {:>12} ({:5.1f}%)\n", name, totals.tensors,
               totals.elements, human_bytes(totals.bytes),
               tensor_bytes ? 100.0 * totals.bytes / tensor_bytes : 0.0);
  }
  fmt::print("\ntensors:\n  {:<48} {:<8} {:<26} {:>12} {:>14}\n", "name", "type", "shape", "bytes", "offset");
  for (size_t p = 0; p < model.parts().size(); ++p) {
    for (const gguf::TensorInfo& t : model.parts()[p].tensors()) {
      fmt::print("  {:<48} {:<8} {:<26} {:>12} {:>14}{}\n", t.name, dtype_name(t.type),
                 shape_text(t.dims), t.n_bytes, t.file_offset,
                 model.parts().size() > 1 ? fmt::format("  part {}", p + 1) : "");
    }
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("inspect", "Show a GGUF model's metadata and tensors");
  auto path = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto full = std::make_shared<bool>(false);
  cmd->add_option("file", *path, "GGUF file (any part of a split model)")->required();
  cmd->add_flag("--json", *as_json, "Print JSON instead of text");
  cmd->add_flag("--full", *full, "Print long arrays whole instead of summarised");
  cmd->callback([=] { run_inspect(*path, *as_json, *full); });
}

}  // namespace tandem::cli
