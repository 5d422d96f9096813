#include "hub/model_hub.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "hub/http_client.h"
#include "plan/memory.h"

namespace tandem::hub {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string endpoint() {
  const char* e = std::getenv("HF_ENDPOINT");
  std::string url = e && *e ? e : "https://huggingface.co";
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

HttpOptions http_options() {
  HttpOptions o;
  if (const char* token = std::getenv("HF_TOKEN"); token && *token) {
    o.headers.push_back(fmt::format("Authorization: Bearer {}", token));
  }
  return o;
}

fs::path repo_dir(const std::string& repo) { return cache_root() / "hub" / repo; }

// A repository path as a URL path: bytes outside the unreserved set percent-encoded, '/' kept.
std::string url_path(const std::string& path) {
  std::string out;
  for (const unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

// A repository path that stays inside the repository's folder.
void check_repo_path(const std::string& repo, const std::string& path) {
  const fs::path p(path);
  bool ok = !path.empty() && p.is_relative();
  for (const fs::path& part : p) ok = ok && part != ".." && part != ".";
  if (!ok) fail("{}: the hub listed a file with an unsafe path '{}'", repo, path);
}

// The hub's file list (every page of it).
std::vector<RepoFile> list_repo(const std::string& repo) {
  std::vector<RepoFile> files;
  std::string url = fmt::format("{}/api/models/{}/tree/main?recursive=true", endpoint(), repo);
  for (int page = 0; !url.empty(); ++page) {
    if (page > 1000) fail("{}: the hub's file list does not end (over 1000 pages)", repo);
    const HttpResponse r = http_get(url, http_options());
    if (r.status == 401 || r.status == 403) {
      fail("{}: the hub refused the file list (HTTP {}); for a gated or private repository set HF_TOKEN", repo,
           r.status);
    }
    if (r.status == 404) fail("{}: no such repository on {}", repo, endpoint());
    if (r.status != 200) fail("{}: the hub answered HTTP {} to {}", repo, r.status, url);
    const Json list = Json::parse(r.body, nullptr, false);
    if (!list.is_array()) fail("{}: the hub's file list ({}) is not a JSON array", repo, url);
    for (const Json& e : list) {
      if (!e.is_object() || e.value("type", "") != "file" || !e.contains("path") || !e["path"].is_string()) continue;
      RepoFile f;
      f.path = e["path"].get<std::string>();
      f.size = e.value("size", uint64_t{0});
      if (e.contains("lfs") && e["lfs"].is_object()) {
        f.sha256 = e["lfs"].value("oid", "");
        f.size = e["lfs"].value("size", f.size);
      }
      for (char& c : f.sha256) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      files.push_back(std::move(f));
    }
    url = r.next_link;
  }
  return files;
}

// manifest.json: {"files": {"PATH": {"sha256": "...", "size": N}}}, complete files only.
Json read_manifest(const fs::path& dir) {
  std::ifstream in(dir / "manifest.json");
  if (!in) return Json{{"files", Json::object()}};
  Json m = Json::parse(in, nullptr, false);
  if (!m.is_object() || !m.contains("files") || !m["files"].is_object()) {
    fail("{}: not a tandem cache manifest (remove the folder and pull again)", (dir / "manifest.json").string());
  }
  return m;
}

void write_manifest(const fs::path& dir, const Json& m) {
  const fs::path tmp = dir / "manifest.json.tmp";
  {
    std::ofstream out(tmp);
    out << m.dump(2) << "\n";
    if (!out) fail("{}: cannot write", tmp.string());
  }
  fs::rename(tmp, dir / "manifest.json");
}

// The complete files the manifest records (and the disk still has, at their size).
std::vector<RepoFile> cached_files(const fs::path& dir) {
  std::vector<RepoFile> files;
  const Json m = read_manifest(dir);
  for (const auto& [path, e] : m["files"].items()) {
    std::error_code ec;
    const uint64_t size = e.value("size", uint64_t{0});
    if (fs::is_regular_file(dir / path, ec) && fs::file_size(dir / path, ec) == size) {
      files.push_back({path, size, e.value("sha256", "")});
    }
  }
  return files;
}

// "name  [=====>    ]  45%  123.4/470.0 MiB  12.3 MiB/s  ETA 0:28", redrawn at most 10 times a second.
ProgressFn progress_bar(const std::string& name) {
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  return [name, last](uint64_t done, uint64_t total, double rate) {
    const auto now = std::chrono::steady_clock::now();
    if (now - *last < std::chrono::milliseconds(100) && done != total) return;
    *last = now;
    const int width = 30, filled = total ? static_cast<int>(width * std::min<uint64_t>(done, total) / total) : 0;
    std::string eta = "--:--";
    if (rate > 0 && total > done) {
      const auto s = static_cast<uint64_t>((total - done) / rate);
      eta = s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{}:{:02}", s / 60, s % 60);
    }
    fmt::print(stderr, "\r{} [{:=<{}}{: <{}}] {:3d}% {:.1f}/{:.1f} MiB {:.1f} MiB/s ETA {}  ", name, "", filled, "",
               width - filled, total ? static_cast<int>(100 * done / total) : 0, done / 1048576.0,
               total / 1048576.0, rate / 1048576.0, eta);
  };
}

// One file into the cache: skipped when the manifest says it is there with this sha256.
void fetch_file(const std::string& repo, const RepoFile& f, const PullOptions& options, Json& manifest) {
  check_repo_path(repo, f.path);
  const fs::path dir = repo_dir(repo), dest = dir / f.path;
  std::error_code ec;
  const Json& known = manifest["files"].contains(f.path) ? manifest["files"][f.path] : Json();
  if (known.is_object() && known.value("sha256", "") == f.sha256 && known.value("size", uint64_t{0}) == f.size &&
      fs::is_regular_file(dest, ec) && fs::file_size(dest, ec) == f.size) {
    fmt::print(stderr, "pull: {} is up to date ({})\n", f.path, plan::format_size(f.size));
    return;
  }
  fs::create_directories(dest.parent_path());
  const fs::path part = dest.string() + ".part";
  const std::string url = fmt::format("{}/{}/resolve/main/{}", endpoint(), repo, url_path(f.path));
  fmt::print(stderr, "pull: downloading {} ({}){}\n", f.path, plan::format_size(f.size),
             fs::exists(part, ec) ? fmt::format(", resuming at {}", plan::format_size(fs::file_size(part, ec))) : "");
  // One download per file at a time: a second pull of it waits for nothing and says so.
  const int lock_fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) fail("{}: cannot create", part.string());
  const std::unique_ptr<int, void (*)(int*)> lock(new int(lock_fd), [](int* fd) {
    ::close(*fd);
    delete fd;
  });
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) fail("{}: another tandem pull is downloading it now", part.string());
  http_download(url, part, f.size, http_options(), options.progress ? progress_bar(f.path) : ProgressFn());
  if (options.progress) fmt::print(stderr, "\n");
  if (f.sha256.empty()) {
    fmt::print(stderr, "pull: warning: the hub gave no sha256 for {}; only its size was checked\n", f.path);
  } else {
    const std::string got = sha256_file(part);
    if (got != f.sha256) {
      fs::remove(part, ec);
      fail("{}: sha256 mismatch for {}: the hub says {}, the download is {}; the download was deleted", repo, f.path,
           f.sha256, got);
    }
  }
  fs::rename(part, dest);
  manifest["files"][f.path] = {{"sha256", f.sha256}, {"size", f.size}};
  write_manifest(dir, manifest);
  fmt::print(stderr, "pull: {} ok{}\n", f.path, f.sha256.empty() ? "" : " (sha256 matches)");
}

}  // namespace

fs::path cache_root() {
  if (const char* c = std::getenv("TANDEM_CACHE"); c && *c) return c;
  const char* home = std::getenv("HOME");
  if (!home || !*home) fail("neither TANDEM_CACHE nor HOME is set: no place for the model cache");
  return fs::path(home) / ".cache" / "tandem";
}

fs::path pull(const ModelRef& ref, const PullOptions& options) {
  const fs::path dir = repo_dir(ref.repo);
  std::vector<RepoFile> files;
  try {
    files = list_repo(ref.repo);
  } catch (const Unreachable& e) {
    if (!options.offline_ok || !fs::exists(dir / "manifest.json")) throw;
    const std::vector<RepoFile> parts = pick_quant(cached_files(dir), ref.repo, ref.quant);
    fmt::print(stderr, "pull: the hub is unreachable ({}); using the cached copy\n", e.what());
    return dir / parts.front().path;
  }
  const std::vector<RepoFile> parts = pick_quant(files, ref.repo, ref.quant);
  fs::create_directories(dir);
  Json manifest = read_manifest(dir);
  for (const RepoFile& f : parts) fetch_file(ref.repo, f, options, manifest);
  return dir / parts.front().path;
}

std::vector<CachedModel> list_cached() {
  std::vector<CachedModel> out;
  const fs::path hub = cache_root() / "hub";
  std::error_code ec;
  if (!fs::is_directory(hub, ec)) return out;
  std::vector<fs::path> repos;
  for (const auto& owner : fs::directory_iterator(hub, ec)) {
    if (!owner.is_directory()) continue;
    for (const auto& name : fs::directory_iterator(owner.path(), ec)) {
      if (fs::exists(name.path() / "manifest.json")) repos.push_back(name.path());
    }
  }
  std::sort(repos.begin(), repos.end());
  for (const fs::path& dir : repos) {
    const std::string repo = dir.parent_path().filename().string() + "/" + dir.filename().string();
    const std::vector<RepoFile> files = cached_files(dir);
    for (const std::string& q : quants_in(files)) {
      CachedModel m;
      m.name = repo + ":" + q;
      for (const RepoFile& f : pick_quant(files, repo, q)) {
        m.files.push_back(dir / f.path);
        m.bytes += f.size;
      }
      out.push_back(std::move(m));
    }
  }
  return out;
}

std::vector<fs::path> remove_cached(const ModelRef& ref) {
  const fs::path dir = repo_dir(ref.repo);
  std::error_code ec;
  if (!fs::exists(dir / "manifest.json", ec)) fail("{}: not in the cache ({})", ref.repo, (cache_root() / "hub").string());
  Json manifest = read_manifest(dir);
  std::vector<RepoFile> doomed;
  if (ref.quant.empty()) {
    for (const auto& [path, e] : manifest["files"].items()) doomed.push_back({path, 0, ""});
  } else {
    std::vector<RepoFile> known;
    for (const auto& [path, e] : manifest["files"].items()) known.push_back({path, 0, ""});
    doomed = pick_quant(known, ref.repo + " (cached)", ref.quant);
  }
  std::vector<fs::path> removed;
  for (const RepoFile& f : doomed) {
    check_repo_path(ref.repo, f.path);
    if (fs::remove(dir / f.path, ec)) removed.push_back(dir / f.path);
    fs::remove(dir / (f.path + ".part"), ec);
    manifest["files"].erase(f.path);
  }
  if (manifest["files"].empty()) {
    fs::remove_all(dir, ec);
    if (dir.parent_path().has_parent_path() && fs::is_empty(dir.parent_path(), ec)) fs::remove(dir.parent_path(), ec);
  } else {
    write_manifest(dir, manifest);
  }
  return removed;
}

}  // namespace tandem::hub
