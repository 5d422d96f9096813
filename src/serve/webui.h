// The chat page's files (src/serve/webui/), compiled into the binary by embed.cmake; the
// server answers GET / and GET /FILE from them.
#pragma once

#include <span>
#include <string_view>

namespace tandem::serve {

struct WebAsset {
  std::string_view path;  // "/index.html"
  std::string_view mime;
  std::string_view bytes;
};

std::span<const WebAsset> web_assets();  // generated

// The asset for a request path ("/" is the page itself); nullptr when there is none.
inline const WebAsset* find_web_asset(std::string_view path) {
  if (path == "/") path = "/index.html";
  for (const WebAsset& a : web_assets()) {
    if (a.path == path) return &a;
  }
  return nullptr;
}

}  // namespace tandem::serve
