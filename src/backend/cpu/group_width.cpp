// group_width.h: the 16-row pass, used where this CPU runs it faster.
#include "backend/cpu/group_width.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string_view>
#include <utility>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/quantize.h"

namespace tandem::cpu {

int x16_min_cols_from(std::span<const WidthTiming> timings, double margin) {
  std::vector<WidthTiming> sorted(timings.begin(), timings.end());
  std::sort(sorted.begin(), sorted.end(), [](const WidthTiming& a, const WidthTiming& b) { return a.cols < b.cols; });
  int from = 0;
  for (auto it = sorted.rbegin(); it != sorted.rend(); ++it) {
    if (!(it->x16 < it->x8 * (1.0 - margin))) break;
    from = it->cols;
  }
  return from;
}

SyntheticOperands synthetic_operands(const QuantDotKernel& k, int64_t n, int64_t rows, int64_t tokens, bool interleave,
                                     uint32_t seed) {
  const DTypeInfo& info = dtype_info(k.weight);
  if (n % info.block_elems != 0) fail("synthetic operands: n = {} is not a multiple of {}'s block", n, dtype_name(k.weight));
  if (interleave && (!k.interleavable() || rows % kInterleave != 0)) {
    fail("synthetic operands: {} rows of {} cannot be interleaved", rows, dtype_name(k.weight));
  }
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  SyntheticOperands s;
  s.row_bytes = static_cast<size_t>(n / info.block_elems) * info.block_bytes;
  s.w.resize(s.row_bytes * static_cast<size_t>(rows));
  if (quant::can_quantize(k.weight)) {
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : x) v = dist(rng);
      quant::quantize_row(k.weight, x.data(), s.w.data() + s.row_bytes * static_cast<size_t>(r), n);
    }
  } else {
    // No quantizer (IQ4_XS): random bytes, each block's leading f16 scale set to a finite
    // value (the kernels' speed does not depend on the codes).
    for (auto& byte : s.w) byte = static_cast<uint8_t>(rng());
    const uint16_t d = 0x2000;  // 2^-7
    for (size_t off = 0; off < s.w.size(); off += info.block_bytes) std::memcpy(s.w.data() + off, &d, 2);
  }
  if (interleave) {
    std::vector<uint8_t> packed(s.w.size());
    for (int64_t r = 0; r < rows; r += kInterleave) {
      const size_t at = s.row_bytes * static_cast<size_t>(r);
      k.repack_x8(s.w.data() + at, s.row_bytes, n, packed.data() + at);
    }
    s.w.swap(packed);
  }
  s.act_row = activation_row_bytes(k, n);
  s.act.resize(s.act_row * static_cast<size_t>(tokens));
  for (int64_t t = 0; t < tokens; ++t) {
    for (auto& v : x) v = dist(rng);
    k.quantize(x.data(), s.act.data() + s.act_row * static_cast<size_t>(t), n);
  }
  return s;
}

std::vector<WidthTiming> time_group_widths(const QuantDotKernel& k, int64_t n, int trials) {
  if (!k.dot_x8 || !k.dot_x16) fail("time_group_widths: {} has no 16-row pass on this path", dtype_name(k.weight));
  constexpr int64_t kRows = 2 * kInterleave, kTokens = 64;
  const SyntheticOperands s = synthetic_operands(k, n, kRows, kTokens, true);
  std::vector<float> y(static_cast<size_t>(kRows * kTokens));
  const size_t group_bytes = s.row_bytes * kInterleave;
  using Clock = std::chrono::steady_clock;
  auto pass = [&](int cols, bool x16) {
    const auto start = Clock::now();
    for (int64_t t0 = 0; t0 < kTokens; t0 += cols) {
      const uint8_t* a = s.act.data() + s.act_row * static_cast<size_t>(t0);
      float* out = y.data() + t0 * kRows;
      if (x16) {
        k.dot_x16(n, s.w.data(), a, s.act_row, cols, out, kRows);
      } else {
        k.dot_x8(n, s.w.data(), a, s.act_row, cols, out, kRows);
        k.dot_x8(n, s.w.data() + group_bytes, a, s.act_row, cols, out + kInterleave, kRows);
      }
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  std::vector<WidthTiming> out;
  for (int cols : kWidthColumns) {
    WidthTiming t{cols, 1e30, 1e30};
    pass(cols, false);  // warm: operands in cache, code paged in
    pass(cols, true);
    for (int i = 0; i < trials; ++i) {
      t.x8 = std::min(t.x8, pass(cols, false));
      t.x16 = std::min(t.x16, pass(cols, true));
    }
    out.push_back(t);
  }
  return out;
}

int parse_x16_override(const char* value) {
  if (value == nullptr) return -1;
  const std::string_view v(value);
  if (v == "auto") return -1;
  if (v == "on") return 1;
  if (v == "off") return 0;
  fail("TANDEM_X16='{}': expected on, off or auto", v);
}

int x16_override() {
  static const int value = parse_x16_override(std::getenv("TANDEM_X16"));
  return value;
}

int x16_min_cols(const QuantDotKernel& k) {
  if (const int forced = x16_override(); forced >= 0) return k.dot_x16 ? forced : 0;
  if (!k.dot_x16) return 0;
  // One decision per 16-row kernel for the process (the kernels of a type on a path are the
  // same functions for every context).
  static std::mutex mutex;
  static std::vector<std::pair<GroupDotFn, int>> decided;
  const std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [fn, from] : decided) {
    if (fn == k.dot_x16) return from;
  }
  const int from = x16_min_cols_from(time_group_widths(k));
  decided.emplace_back(k.dot_x16, from);
  return from;
}

}  // namespace tandem::cpu
