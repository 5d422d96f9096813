// Shared by the CUDA op tests: skip (with the reason in the output) where no device exists,
// device round-trips of host vectors, and the error measure every op test reports.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cuda/cuda_context.h"

#define TANDEM_REQUIRE_CUDA_DEVICE()                                   \
  if (!::tandem::cuda::device_available()) GTEST_SKIP() << "skipped: no CUDA device"

namespace tandem::cuda::testing {

template <class T>
DeviceBuffer upload(const std::vector<T>& host) {
  DeviceBuffer d(host.size() * sizeof(T));
  if (!host.empty()) copy_to_device(d.data(), host.data(), host.size() * sizeof(T));
  return d;
}

template <class T>
std::vector<T> download(const DeviceBuffer& d, size_t n) {
  std::vector<T> host(n);
  if (n != 0) copy_to_host(host.data(), d.data(), n * sizeof(T));
  return host;
}

// max |got - want| / max(max |want|, floor): one number per comparison, stated per op.
inline double relative_error(const std::vector<float>& got, const std::vector<float>& want, double floor = 1e-6) {
  double max_diff = 0, max_ref = floor;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(want[i])));
  }
  return max_diff / max_ref;
}

}  // namespace tandem::cuda::testing
