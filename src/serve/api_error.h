// An error a request earns, answered as OpenAI does: HTTP status and
// {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <string>

#include "core/error.h"

namespace tandem::serve {

class ApiError : public Error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {})
      : Error(message), status_(status), param_(std::move(param)), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  std::string type() const {
    switch (status_) {
      case 401: return "authentication_error";
      case 404: return "not_found_error";
      case 429:
      case 503: return "server_unavailable_error";
      default: return status_ >= 500 ? "server_error" : "invalid_request_error";
    }
  }

 private:
  int status_;
  std::string param_, code_;
};

template <typename... Args>
[[noreturn]] void bad_request(std::string param, fmt::format_string<Args...> format, Args&&... args) {
  throw ApiError(400, fmt::format(format, std::forward<Args>(args)...), std::move(param));
}

}  // namespace tandem::serve
