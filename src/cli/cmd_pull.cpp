// `tandem pull OWNER/REPO[:QUANT]`, `tandem list`, `tandem rm OWNER/REPO[:QUANT]`: models
// by name from a Hugging Face-style hub into the local cache (src/hub/).
#include <fmt/format.h>
#include <unistd.h>

#include "cli/commands.h"
#include "hub/model_hub.h"
#include "plan/memory.h"

namespace tandem::cli {

void register_pull(CLI::App& app) {
  auto name = std::make_shared<std::string>();
  CLI::App* pull = app.add_subcommand(
      "pull",
      "Download a GGUF model by name from the Hugging Face hub (or $HF_ENDPOINT) into the cache\n"
      "($TANDEM_CACHE or ~/.cache/tandem), resuming interrupted downloads and checking the hub's\n"
      "sha256; prints the model's path. HF_TOKEN is sent when set.");
  pull->add_option("model", *name, "OWNER/REPO[:QUANT], e.g. Qwen/Qwen3-8B-GGUF:Q4_K_M (default quant Q4_K_M)")
      ->required();
  pull->callback([name] {
    hub::PullOptions o;
    o.progress = isatty(STDERR_FILENO);
    o.offline_ok = false;  // pull means: ask the hub
    fmt::print("{}\n", hub::pull(hub::parse_model_ref(*name), o).string());
  });

  CLI::App* list = app.add_subcommand("list", "Models in the cache: name, size, path");
  list->callback([] {
    const std::vector<hub::CachedModel> models = hub::list_cached();
    if (models.empty()) {
      fmt::print(stderr, "no models in {} (tandem pull OWNER/REPO[:QUANT])\n", (hub::cache_root() / "hub").string());
      return;
    }
    size_t width = 4;
    for (const hub::CachedModel& m : models) width = std::max(width, m.name.size());
    fmt::print("{:<{}}  {:>10}  {}\n", "NAME", width, "SIZE", "PATH");
    for (const hub::CachedModel& m : models) {
      fmt::print("{:<{}}  {:>10}  {}{}\n", m.name, width, plan::format_size(m.bytes),
                 m.files.front().string(), m.files.size() > 1 ? fmt::format(" (+{} parts)", m.files.size() - 1) : "");
    }
  });

  auto rm_name = std::make_shared<std::string>();
  CLI::App* rm = app.add_subcommand("rm", "Remove a model from the cache (every quant of the repository when no :QUANT)");
  rm->add_option("model", *rm_name, "OWNER/REPO[:QUANT]")->required();
  rm->callback([rm_name] {
    for (const auto& path : hub::remove_cached(hub::parse_model_ref(*rm_name))) fmt::print("removed {}\n", path.string());
  });
}

}  // namespace tandem::cli
