#include "hub/http_client.h"

#include <fmt/format.h>

#include "core/error.h"

#if !TANDEM_HAVE_CURL
// Built without libcurl/OpenSSL (CMake said so): the hub is out of reach, the rest works.
namespace tandem::hub {
namespace {
[[noreturn]] void missing() {
  fail("this tandem was built without libcurl and OpenSSL, so it cannot fetch models (apt-get install "
       "libcurl4-openssl-dev libssl-dev, then rebuild)");
}
}  // namespace
HttpResponse http_get(const std::string&, const HttpOptions&) { missing(); }
void http_download(const std::string&, const std::filesystem::path&, uint64_t, const HttpOptions&, const ProgressFn&) {
  missing();
}
std::string sha256_file(const std::filesystem::path&) { missing(); }
}  // namespace tandem::hub
#else

#include <curl/curl.h>
#include <openssl/evp.h>
#include <strings.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

namespace tandem::hub {
namespace {

void global_init() {
  static const bool done = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  if (!done) fail("libcurl could not be initialised");
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Curl = std::unique_ptr<CURL, CurlDeleter>;
using Headers = std::unique_ptr<curl_slist, CurlDeleter>;

Headers make_headers(const std::vector<std::string>& lines) {
  curl_slist* list = nullptr;
  for (const std::string& h : lines) list = curl_slist_append(list, h.c_str());
  return Headers(list);
}

Curl make_curl(const std::string& url, curl_slist* headers) {
  global_init();
  Curl c(curl_easy_init());
  if (!c) fail("libcurl: cannot create a handle");
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_FOLLOWLOCATION, 1L);  // the hub redirects downloads to its CDN
  curl_easy_setopt(c.get(), CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c.get(), CURLOPT_USERAGENT, "tandem/0.1");
  curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT, 30L);
  // A stalled transfer (under 1 byte/s for 30 s) counts as a drop and is resumed.
  curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_TIME, 30L);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  return c;
}

size_t append_to_string(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// Collects the Link header's rel="next" target.
size_t read_link_header(char* data, size_t size, size_t n, void* out) {
  const std::string line(data, size * n);
  if (line.size() > 5 && strncasecmp(line.c_str(), "link:", 5) == 0 && line.find("rel=\"next\"") != std::string::npos) {
    const size_t open = line.find('<'), close = line.find('>');
    if (open != std::string::npos && close != std::string::npos && close > open) {
      *static_cast<std::string*>(out) = line.substr(open + 1, close - open - 1);
    }
  }
  return size * n;
}

std::string status_hint(long status) {
  switch (status) {
    case 401: return " (unauthorized: set HF_TOKEN for a gated or private repository)";
    case 403: return " (forbidden: accept the repository's terms on the hub, or check HF_TOKEN)";
    case 404: return " (not found)";
    default: return "";
  }
}

// One attempt's sink: appends to the part file, or starts it over when the server
// answered a range request with the whole file (200).
struct DownloadSink {
  CURL* curl;
  std::FILE* file;
  uint64_t start;      // bytes in the part file when the attempt began
  uint64_t written = 0;
  bool checked = false;
  long status = 0;
  std::string error;
};

size_t write_part(char* data, size_t size, size_t n, void* p) {
  auto* s = static_cast<DownloadSink*>(p);
  if (!s->checked) {
    s->checked = true;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status >= 300) return size * n;  // the body is an error page, not file bytes
    if (s->status == 200 && s->start > 0) {  // range ignored: the body is the whole file
      if (std::fflush(s->file) != 0 || ftruncate(fileno(s->file), 0) != 0 || std::fseek(s->file, 0, SEEK_SET) != 0) {
        s->error = "cannot truncate the part file";
        return 0;
      }
      s->start = 0;
    }
  }
  if (s->status >= 300) return size * n;
  if (std::fwrite(data, 1, size * n, s->file) != size * n) {
    s->error = "cannot write the part file (disk full?)";
    return 0;
  }
  s->written += size * n;
  return size * n;
}

struct ProgressState {
  const ProgressFn* fn;
  const DownloadSink* sink;
  uint64_t total;
  std::chrono::steady_clock::time_point t0;
};

int report_progress(void* p, curl_off_t dl_total, curl_off_t, curl_off_t, curl_off_t) {
  auto* s = static_cast<ProgressState*>(p);
  if (!*s->fn) return 0;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - s->t0).count();
  const uint64_t total = s->total ? s->total : (dl_total > 0 ? s->sink->start + dl_total : 0);
  (*s->fn)(s->sink->start + s->sink->written, total, secs > 0 ? s->sink->written / secs : 0);
  return 0;
}

}  // namespace

HttpResponse http_get(const std::string& url, const HttpOptions& options) {
  Headers headers = make_headers(options.headers);
  Curl c = make_curl(url, headers.get());
  HttpResponse r;
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, append_to_string);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c.get(), CURLOPT_HEADERFUNCTION, read_link_header);
  curl_easy_setopt(c.get(), CURLOPT_HEADERDATA, &r.next_link);
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT, 120L);
  const CURLcode rc = curl_easy_perform(c.get());
  if (rc != CURLE_OK) throw Unreachable(fmt::format("{}: {}", url, curl_easy_strerror(rc)));
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

void http_download(const std::string& url, const std::filesystem::path& part, uint64_t size,
                   const HttpOptions& options, const ProgressFn& progress) {
  namespace fs = std::filesystem;
  double delay = options.retry_delay_s;
  std::string last_error;
  for (int attempt = 0; attempt < options.attempts; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      delay *= 2;
    }
    std::error_code ec;
    uint64_t have = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
    if (size > 0 && have > size) {  // not this file: start over
      fs::remove(part, ec);
      have = 0;
    }
    if (size > 0 && have == size) return;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(part.c_str(), "ab"), std::fclose);
    if (!file) fail("{}: cannot open for writing", part.string());
    Headers headers = make_headers(options.headers);
    Curl c = make_curl(url, headers.get());
    DownloadSink sink{c.get(), file.get(), have, 0, false, 0, {}};
    ProgressState ps{&progress, &sink, size, std::chrono::steady_clock::now()};
    if (have > 0) curl_easy_setopt(c.get(), CURLOPT_RANGE, fmt::format("{}-", have).c_str());
    curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, write_part);
    curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c.get(), CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.get(), CURLOPT_XFERINFOFUNCTION, report_progress);
    curl_easy_setopt(c.get(), CURLOPT_XFERINFODATA, &ps);
    const CURLcode rc = curl_easy_perform(c.get());
    if (std::fflush(file.get()) != 0) fail("{}: cannot write (disk full?)", part.string());
    file.reset();
    long status = sink.status;
    if (!sink.checked) curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
    if (!sink.error.empty()) fail("{}: {}", part.string(), sink.error);
    if (status == 416 && have > 0) {  // nothing past what we have: complete unless the size says otherwise
      if (size == 0) return;
      fs::remove(part, ec);
      last_error = "the server refused the range (HTTP 416)";
      continue;
    }
    if (status >= 400 && status < 500 && status != 408 && status != 429) {
      if (fs::file_size(part, ec) == 0) fs::remove(part, ec);  // nothing to resume: leave no file
      fail("{}: HTTP {}{}", url, status, status_hint(status));
    }
    if (rc == CURLE_OK && status >= 200 && status < 300) {
      const uint64_t now = fs::file_size(part, ec);
      if (size == 0 || now == size) return;
      last_error = fmt::format("the transfer ended at byte {} of {}", now, size);
      continue;
    }
    last_error = rc != CURLE_OK ? curl_easy_strerror(rc) : fmt::format("HTTP {}", status);
  }
  fail("{}: download failed after {} attempts: {} (run it again to resume from {})", url, options.attempts,
       last_error, part.string());
}

std::string sha256_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open to check its sha256", path.string());
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) fail("sha256: OpenSSL failed to start");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) fail("{}: read error while checking its sha256", path.string());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &n);
  std::string hex;
  for (unsigned int i = 0; i < n; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

}  // namespace tandem::hub

#endif  // TANDEM_HAVE_CURL
