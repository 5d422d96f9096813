#include "hub/hub_files.h"

#include <algorithm>
#include <regex>
#include <set>

#include "core/error.h"

namespace tandem::hub {
namespace {

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string base_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "-00001-of-00003.gguf": part 1 of 3 (gguf-split's naming).
const std::regex& split_suffix() {
  static const std::regex re(R"(-(\d{5})-of-(\d{5})\.gguf$)", std::regex::icase);
  return re;
}

bool is_model_file(const RepoFile& f) {
  const std::string name = upper(base_name(f.path));
  return ends_with(name, ".GGUF") && name.rfind("MMPROJ", 0) != 0;
}

}  // namespace

ModelRef parse_model_ref(const std::string& text) {
  ModelRef ref;
  const size_t colon = text.find(':');
  ref.repo = text.substr(0, colon);
  if (colon != std::string::npos) ref.quant = text.substr(colon + 1);
  static const std::regex repo_re(R"([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)");
  if (!std::regex_match(ref.repo, repo_re) || ref.repo.find("..") != std::string::npos) {
    fail("'{}' is not a model name: give OWNER/REPO[:QUANT], e.g. Qwen/Qwen3-8B-GGUF:Q4_K_M", text);
  }
  if (colon != std::string::npos && ref.quant.empty()) fail("'{}': the quant after ':' is empty", text);
  return ref;
}

std::string quant_of(const std::string& path) {
  // Tags as llama-quantize names them (plus unsloth's UD- prefix), bounded by separators.
  static const std::regex tag_re(
      R"((?:^|[-._/])((?:UD-)?(?:I?Q[0-9]+(?:_[A-Z0-9]+)*|T?Q[0-9]_[0-9]|BF16|F16|F32|MXFP4(?:_MOE)?))(?=[-._/]|$))",
      std::regex::icase);
  std::string name = std::regex_replace(path, split_suffix(), ".gguf");
  std::string last;
  for (auto it = std::sregex_iterator(name.begin(), name.end(), tag_re); it != std::sregex_iterator(); ++it) {
    last = (*it)[1].str();
  }
  return upper(last);
}

std::vector<std::string> quants_in(const std::vector<RepoFile>& files) {
  std::set<std::string> quants;
  for (const RepoFile& f : files) {
    if (!is_model_file(f)) continue;
    const std::string q = quant_of(f.path);
    quants.insert(q.empty() ? upper(base_name(f.path)) : q);
  }
  return {quants.begin(), quants.end()};
}

std::vector<RepoFile> pick_quant(const std::vector<RepoFile>& files, const std::string& repo,
                                 const std::string& quant) {
  const std::vector<std::string> available = quants_in(files);
  if (available.empty()) fail("{}: the repository has no GGUF model files", repo);
  std::string want = upper(quant);
  if (want.empty()) {
    const bool has_default = std::find(available.begin(), available.end(), kDefaultQuant) != available.end();
    want = has_default || available.size() > 1 ? kDefaultQuant : available.front();
  }
  std::vector<RepoFile> picked;
  for (const RepoFile& f : files) {
    if (!is_model_file(f)) continue;
    const std::string q = quant_of(f.path);
    if ((q.empty() ? upper(base_name(f.path)) : q) == want || upper(f.path) == want) picked.push_back(f);
  }
  if (picked.empty()) {
    std::string list;
    for (const std::string& q : available) list += (list.empty() ? "" : ", ") + q;
    fail("{}: no {} file; the repository has: {}", repo, want, list);
  }
  // One model: a single file, or the parts of one split set (the first set found).
  std::sort(picked.begin(), picked.end(), [](const RepoFile& a, const RepoFile& b) { return a.path < b.path; });
  std::smatch m;
  if (!std::regex_search(picked.front().path, m, split_suffix())) return {picked.front()};
  const std::string stem = picked.front().path.substr(0, m.position(0));
  const int count = std::stoi(m[2].str());
  std::vector<RepoFile> parts;
  for (const RepoFile& f : picked) {
    std::smatch pm;
    if (std::regex_search(f.path, pm, split_suffix()) && f.path.substr(0, pm.position(0)) == stem &&
        std::stoi(pm[2].str()) == count) {
      parts.push_back(f);
    }
  }
  if (static_cast<int>(parts.size()) != count) {
    fail("{}: {} is split into {} parts but the repository has {} of them", repo, picked.front().path, count,
         parts.size());
  }
  return parts;
}

}  // namespace tandem::hub
