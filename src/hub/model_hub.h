// Models by name: `tandem pull OWNER/REPO[:QUANT]` and `-hf` on the model commands. The
// hub is Hugging Face's API or anything that serves the same paths ($HF_ENDPOINT):
//   GET {endpoint}/api/models/{repo}/tree/main?recursive=true   the file list, with each
//       LFS file's sha256 ("lfs": {"oid": ...}) and size; paged by a Link: rel="next" header
//   GET {endpoint}/{repo}/resolve/main/{path}                    the file (Range requests)
// HF_TOKEN, when set, goes with every request as "Authorization: Bearer ...".
//
// Cache ($TANDEM_CACHE, else ~/.cache/tandem): {cache}/hub/{owner}/{name}/{path}, beside a
// manifest.json recording each complete file's sha256 and size. A download grows in
// "{path}.part" and is renamed into place only after its sha256 matched the hub's, so a
// file under its own name is always whole.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hub/hub_files.h"

namespace tandem::hub {

std::filesystem::path cache_root();  // $TANDEM_CACHE or ~/.cache/tandem

struct PullOptions {
  bool progress = false;  // a progress bar on stderr (a terminal); otherwise one line per file
  bool offline_ok = true; // hub unreachable: use a complete cached copy of the quant if there is one
};

// Resolves the reference against the hub, downloads what the cache lacks, checks each
// file's sha256 and returns the model's path (a split model's first part).
std::filesystem::path pull(const ModelRef& ref, const PullOptions& options);

struct CachedModel {
  std::string name;  // "owner/name:QUANT"
  std::vector<std::filesystem::path> files;
  uint64_t bytes = 0;
};

// Every complete model in the cache, by name.
std::vector<CachedModel> list_cached();

// Removes the cached files of `ref` (all quants when it names none, and the repository's
// folder when nothing is left); returns what was removed. Nothing matching is an error.
std::vector<std::filesystem::path> remove_cached(const ModelRef& ref);

}  // namespace tandem::hub
