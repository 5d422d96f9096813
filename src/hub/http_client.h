// HTTP for the model hub (libcurl): small GET requests, and file downloads that resume
// with range requests after a dropped connection, with a progress callback.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"

namespace tandem::hub {

// The server could not be reached at all (no connection, DNS, timeout): unlike an HTTP
// error answer, a cached copy may still serve.
struct Unreachable : Error {
  using Error::Error;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::string next_link;  // the Link header's rel="next" URL (paged listings), if any
};

// (bytes of the file present, bytes in all or 0 when unknown, bytes per second this run)
using ProgressFn = std::function<void(uint64_t, uint64_t, double)>;

struct HttpOptions {
  std::vector<std::string> headers;  // "Name: value"
  int attempts = 6;                  // per download: the first try and the resumes after a drop
  double retry_delay_s = 0.5;        // doubled after each failed attempt
};

// GET `url`; a transport failure (no connection, timeout) is an Unreachable naming the URL.
HttpResponse http_get(const std::string& url, const HttpOptions& options);

// Downloads `url` into `part` (appending: an existing `part` is resumed with a Range
// request), until it holds `size` bytes (0: the server's length). Drops and timeouts are
// resumed up to `attempts` times. HTTP errors (401, 404, ...) end it at once, naming the
// status. `part` stays on failure, so a later call resumes it.
void http_download(const std::string& url, const std::filesystem::path& part, uint64_t size,
                   const HttpOptions& options, const ProgressFn& progress);

// Lower-case hex SHA-256 of a file's bytes.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace tandem::hub
