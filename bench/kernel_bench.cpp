// Single-thread throughput of the integer dot kernels (quant_dot.h), the inner loop of
// every CPU matmul: a random weight matrix of each type times 1..4 and 8 activation
// columns per call, in the order the matmul drives them (a tile of rows stays in L1 while
// the columns stream). Prints GMAC/s, so a kernel change can be judged without the noise
// of a whole model run (the fastest of the timed passes). A tool, not a test.
//   tandem_kernel_bench [--types q4_k,q6_k,...] [--n 2048] [--rows 512] [--tokens 64]
//                       [--isa scalar|avx2] [--seconds 0.5] [--layout rows|x8] [--token-chunk N] [--x16 auto|on|off]
#include <fmt/format.h>

#include <chrono>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/group_width.h"
#include "backend/cpu/quant_dot.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace {

using tandem::DType;
using namespace tandem::cpu;

double bench_one(const QuantDotKernel& k, bool x8, int64_t n, int64_t rows, int64_t tokens, int cols, double seconds,
                 int64_t token_chunk, int x16_from) {
  const SyntheticOperands s = synthetic_operands(k, n, rows, tokens, x8);
  const std::vector<uint8_t>& w = s.w;
  const std::vector<uint8_t>& act = s.act;
  const size_t row_bytes = s.row_bytes, act_row = s.act_row;
  std::vector<float> y(static_cast<size_t>(rows * tokens));
  const bool x16 = x8 && k.dot_x16 && x16_from > 0 && cols >= x16_from;
  // Row tiles as the matmul takes them (whole groups, two at least for a 16-row pass).
  QuantDotKernel tiled = k;
  if (!x16) tiled.dot_x16 = nullptr;
  const int64_t tile = matmul_row_tile(tiled, row_bytes, x8);
  // Token chunks as the matmul takes them (cpu_ops.h), unless --token-chunk says otherwise.
  const int64_t chunk = token_chunk > 0 ? token_chunk : matmul_token_chunk(act_row);
  int64_t columns = 0;  // per pass: whole calls of `cols` in each chunk
  for (int64_t c0 = 0; c0 < tokens; c0 += chunk) columns += (std::min(tokens, c0 + chunk) - c0) / cols * cols;
  auto pass = [&] {
    for (int64_t c0 = 0; c0 < tokens; c0 += chunk) {
      const int64_t c1 = std::min(tokens, c0 + chunk);
      for (int64_t r0 = 0; r0 < rows; r0 += tile) {
        for (int64_t t0 = c0; t0 + cols <= c1; t0 += cols) {
          const int64_t r1 = std::min(rows, r0 + tile);
          for (int64_t r = r0; r < r1;) {
            const uint8_t* wr = w.data() + row_bytes * static_cast<size_t>(r);
            const uint8_t* a = act.data() + act_row * static_cast<size_t>(t0);
            if (x16 && r + 2 * kInterleave <= r1) {  // as the matmul picks it
              k.dot_x16(n, wr, a, act_row, cols, y.data() + t0 * rows + r, rows);
              r += 2 * kInterleave;
            } else if (x8) {
              k.dot_x8(n, wr, a, act_row, cols, y.data() + t0 * rows + r, rows);
              r += kInterleave;
            } else {
              k.dot(n, wr, a, act_row, cols, y.data() + t0 * rows + r, rows);
              ++r;
            }
          }
        }
      }
    }
  };
  pass();
  // The fastest pass: other tenants of a shared machine only ever slow a pass down.
  double best = 1e30, elapsed = 0;
  while (elapsed < seconds) {
    const auto start = std::chrono::steady_clock::now();
    pass();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, t);
    elapsed += t;
  }
  const double macs = static_cast<double>(n) * static_cast<double>(rows) * static_cast<double>(columns);
  return macs / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Single-thread throughput of the integer dot kernels"};
  std::vector<std::string> types{"q4_0", "q5_0", "q8_0", "q4_k", "q5_k", "q6_k"};
  int64_t n = 2048, rows = 512, tokens = 64, token_chunk = 0;
  std::string isa_name_arg;
  double seconds = 0.5;
  std::string layout = "rows";
  app.add_option("--types", types, "Weight types (random codes where tandem has no quantizer)")->delimiter(',');
  app.add_option("--n", n, "Row length (a multiple of 256)")->check(CLI::Range(int64_t{256}, int64_t{1} << 20));
  app.add_option("--rows", rows, "Weight rows")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--tokens", tokens, "Activation columns in all (1: decode, weights streamed from memory when --rows is large)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("--isa", isa_name_arg, "scalar, avx2, avx-vnni or avx512-vnni (default: the best this CPU runs)");
  app.add_option("--token-chunk", token_chunk,
                 "Tokens per pass over the row tiles (default: the matmul's, from the L2 size; more than --tokens: "
                 "one pass, as before the chunks)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  std::string x16_mode = "auto";
  app.add_option("--x16", x16_mode,
                 "x8 layout, where the path has a 16-row pass: auto (from the column count the matmul measures "
                 "on this CPU), on (always), off (one group per call)")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_flag_callback("--no-x16", [&] { x16_mode = "off"; }, "Same as --x16 off");
  std::vector<int> col_counts = {1, 2, 3, 4, 8};
  app.add_option("--cols", col_counts, "Columns per kernel call to time (a verify pass of k guesses: k + 1)")
      ->check(CLI::Range(1, 8));
  app.add_option("--seconds", seconds, "Time per measurement")->check(CLI::Range(0.01, 60.0));
  app.add_option("--layout", layout, "rows (as in the file) or x8 (row-interleaved groups of 8, interleaved.h)")
      ->check(CLI::IsMember({"rows", "x8"}));
  CLI11_PARSE(app, argc, argv);
  try {
    if (n % 256 != 0) tandem::fail("--n {} is not a multiple of 256", n);
    Isa isa = best_isa();
    if (!isa_name_arg.empty()) {
      bool known = false;
      for (Isa candidate : {Isa::scalar, Isa::avx2, Isa::avx_vnni, Isa::avx512_vnni}) {
        if (isa_name_arg != isa_name(candidate)) continue;
        if (!cpu_runs(candidate)) tandem::fail("--isa {}: this CPU (or TANDEM_CPU_MAX) does not allow it", isa_name_arg);
        isa = candidate;
        known = true;
      }
      if (!known) tandem::fail("--isa '{}': expected scalar, avx2, avx-vnni or avx512-vnni", isa_name_arg);
    }
    fmt::print("isa {}, layout {}, n {}, rows {}, tokens {} (chunks: {}), one thread; GMAC/s per columns-per-call\n",
               isa_name(isa), layout, n, rows, tokens, token_chunk > 0 ? std::to_string(token_chunk) : "the matmul's");
    fmt::print("{:<8}", "type");
    for (int cols : col_counts) fmt::print(" {:>9}", fmt::format("{} col{}", cols, cols == 1 ? "" : "s"));
    fmt::print("\n");
    for (const std::string& name : types) {
      const auto parsed = tandem::dtype_from_name(name);
      if (!parsed) tandem::fail("--types: unknown type '{}'", name);
      const DType type = *parsed;
      const QuantDotKernel k = quant_dot_kernel(type, isa);
      if (!k) tandem::fail("--types: {} has no integer kernel", name);
      const bool x8 = layout == "x8";
      if (x8 && !k.interleavable()) tandem::fail("--layout x8: {} has no interleaved kernel", name);
      if (x8 && rows % kInterleave != 0) tandem::fail("--layout x8: --rows {} is not a multiple of {}", rows, kInterleave);
      int x16_from = x16_mode == "on" ? 1 : 0;
      if (x8 && k.dot_x16 && x16_mode == "auto") {
        // As the matmul chooses: streamed when each byte is read once from memory (at most 8
        // tokens, more weights than the L3), in cache otherwise.
        const size_t weight_bytes = static_cast<size_t>(rows) * static_cast<size_t>(n / tandem::dtype_info(type).block_elems) *
                                    tandem::dtype_info(type).block_bytes;
        const bool streamed = tokens <= 8 && weights_stream(weight_bytes);
        // Streamed, every core reads at once, as the engine's matmul threads do.
        tandem::ThreadPool probe_pool(tandem::default_thread_count());
        const std::vector<WidthTiming> widths =
            streamed ? time_streamed_group_widths(k, streamed_probe_bytes(), &probe_pool) : time_group_widths(k);
        x16_from = x16_min_cols_from(widths, streamed ? kStreamedMargin : kCachedMargin);
        fmt::print("{:<8} 16-row pass measured {} (x8 / x16 time):", name, streamed ? "streamed" : "in cache");
        for (const WidthTiming& t : widths) fmt::print(" {} cols {:.2f}", t.cols, t.x8 / t.x16);
        fmt::print(" -> {}\n", x16_from > 0 ? fmt::format("from {} cols", x16_from) : std::string("not used"));
      }
      fmt::print("{:<8}", name);
      for (int cols : col_counts) {
        if (cols > tokens) {
          fmt::print(" {:>9}", "-");
        } else {
          fmt::print(" {:>9.2f}", bench_one(k, x8, n, rows, tokens, cols, seconds, token_chunk, x16_from));
        }
      }
      fmt::print("\n");
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "tandem_kernel_bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
