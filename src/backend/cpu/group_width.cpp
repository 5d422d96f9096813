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

#include "backend/cpu/cpu_ops.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/thread_pool.h"
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

namespace {

// Activation columns a timed pass holds at most (the in-cache measurement's 64 tokens).
constexpr int64_t kTimedTokens = 64;

// Times k.dot_x8 (two calls per 16 rows) against k.dot_x16 (one) over `pairs` consecutive
// 16-row blocks of w, for `tokens(cols)` activation columns in calls of `cols`, at each count
// in `columns`: the widths alternate and each keeps its best of `trials` passes (a busy
// neighbour only ever slows a pass); `warm` first runs one untimed pass of each.
// With a pool, each pass splits the pairs among its threads, every thread with its own
// outputs: all of them stream at once, as the matmul's do.
template <class Tokens>
std::vector<WidthTiming> time_widths(const QuantDotKernel& k, int64_t n, const uint8_t* w, size_t pairs,
                                     const SyntheticOperands& s, std::span<const int> columns, Tokens tokens, int trials,
                                     bool warm, ThreadPool* pool = nullptr) {
  constexpr int64_t kRows = 2 * kInterleave;
  const size_t group_bytes = s.row_bytes * kInterleave, y_per_thread = static_cast<size_t>(kRows * kTimedTokens);
  std::vector<float> y(y_per_thread * static_cast<size_t>(pool != nullptr ? pool->size() : 1));
  using Clock = std::chrono::steady_clock;
  auto pairs_pass = [&](int thread, int cols, bool x16, size_t p0, size_t p1) {
    float* y_thread = y.data() + y_per_thread * static_cast<size_t>(thread);
    for (int64_t t0 = 0; t0 < tokens(cols); t0 += cols) {
      const uint8_t* a = s.act.data() + s.act_row * static_cast<size_t>(t0);
      float* out = y_thread + t0 * kRows;
      const uint8_t* g = w + p0 * 2 * group_bytes;
      for (size_t p = p0; p < p1; ++p, g += 2 * group_bytes) {
        if (x16) {
          k.dot_x16(n, g, a, s.act_row, cols, out, kRows);
        } else {
          k.dot_x8(n, g, a, s.act_row, cols, out, kRows);
          k.dot_x8(n, g + group_bytes, a, s.act_row, cols, out + kInterleave, kRows);
        }
      }
    }
  };
  auto pass = [&](int cols, bool x16) {
    const auto start = Clock::now();
    if (pool == nullptr) {
      pairs_pass(0, cols, x16, 0, pairs);
    } else {
      pool->parallel_for(static_cast<int64_t>(pairs), [&](int thread, int64_t p0, int64_t p1) {
        pairs_pass(thread, cols, x16, static_cast<size_t>(p0), static_cast<size_t>(p1));
      });
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  std::vector<WidthTiming> out;
  for (int cols : columns) {
    WidthTiming t{cols, 1e30, 1e30};
    if (warm) {  // operands in cache, code paged in
      pass(cols, false);
      pass(cols, true);
    }
    for (int i = 0; i < trials; ++i) {
      t.x8 = std::min(t.x8, pass(cols, false));
      t.x16 = std::min(t.x16, pass(cols, true));
    }
    out.push_back(t);
  }
  return out;
}

void require_x16(const QuantDotKernel& k, const char* what) {
  if (!k.dot_x8 || !k.dot_x16) fail("{}: {} has no 16-row pass on this path", what, dtype_name(k.weight));
}

}  // namespace

std::vector<WidthTiming> time_group_widths(const QuantDotKernel& k, int64_t n, int trials) {
  require_x16(k, "time_group_widths");
  const SyntheticOperands s = synthetic_operands(k, n, 2 * kInterleave, kTimedTokens, true);
  return time_widths(k, n, s.w.data(), 1, s, kWidthColumns, [](int) { return kTimedTokens; }, trials, true);
}

std::vector<WidthTiming> time_streamed_group_widths(const QuantDotKernel& k, size_t bytes, ThreadPool* pool, int64_t n,
                                                    int trials) {
  require_x16(k, "time_streamed_group_widths");
  const int max_cols = *std::max_element(std::begin(kStreamedWidthColumns), std::end(kStreamedWidthColumns));
  const SyntheticOperands s = synthetic_operands(k, n, 2 * kInterleave, max_cols, true);
  // The 16 synthetic rows, repeated: the kernels' speed does not depend on the codes, and
  // filling the buffer this way takes a memcpy, not a quantizer's time.
  const size_t pair_bytes = s.w.size(), pairs = std::max<size_t>(1, bytes / pair_bytes);
  const Memory buffer = OpContext::allocate_weights(pairs * pair_bytes);
  auto* w = buffer.as();
  for (size_t p = 0; p < pairs; ++p) std::memcpy(w + p * pair_bytes, s.w.data(), pair_bytes);
  // One call per 16 rows and no warm-up: each pass reads every byte once, from memory.
  return time_widths(k, n, w, pairs, s, kStreamedWidthColumns, [](int cols) { return int64_t{cols}; }, trials, false,
                     pool);
}

namespace {
// The L3 the core sees; 32 MiB where cpuid does not say.
int64_t l3_bytes() { return cpu_caches().l3 > 0 ? cpu_caches().l3 : int64_t{32} << 20; }
}  // namespace

size_t streamed_probe_bytes() {
  return static_cast<size_t>(std::clamp<int64_t>(2 * l3_bytes(), int64_t{32} << 20, int64_t{256} << 20));
}

bool weights_stream(size_t weight_bytes) { return weight_bytes > static_cast<size_t>(l3_bytes()); }

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

namespace {

// One decision per 16-row kernel for the process (the kernels of a type on a path are the
// same functions for every context): `measure` runs on the first call for k.dot_x16.
template <class Measure>
int decided_once(std::vector<std::pair<GroupDotFn, int>>& decided, const QuantDotKernel& k, Measure measure) {
  if (const int forced = x16_override(); forced >= 0) return k.dot_x16 ? forced : 0;
  if (!k.dot_x16) return 0;
  static std::mutex mutex;
  const std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [fn, from] : decided) {
    if (fn == k.dot_x16) return from;
  }
  const int from = measure();
  decided.emplace_back(k.dot_x16, from);
  return from;
}

}  // namespace

int x16_min_cols(const QuantDotKernel& k) {
  static std::vector<std::pair<GroupDotFn, int>> decided;
  return decided_once(decided, k, [&] { return x16_min_cols_from(time_group_widths(k)); });
}

int x16_min_cols_streamed(const QuantDotKernel& k, ThreadPool* pool) {
  static std::vector<std::pair<GroupDotFn, int>> decided;
  return decided_once(decided, k, [&] {
    return x16_min_cols_from(time_streamed_group_widths(k, streamed_probe_bytes(), pool), kStreamedMargin);
  });
}

}  // namespace tandem::cpu
