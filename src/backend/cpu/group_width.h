// How many interleaved groups one kernel call takes: measured per CPU, not assumed.
//
// Where a path has a 16-row pass (QuantDotKernel::dot_x16: two groups of 8 rows per call),
// it loads and broadcasts each activation chunk once for 16 rows instead of 8, but holds
// twice the accumulators and unpacked codes and walks two weight streams at once. Whether
// that pays depends on the core's registers, ports and load bandwidth, on how many
// activation columns a call has, and on where the weights come from. So the matmul asks,
// once per weight type and process, which width is faster at each column count, twice:
//  - in cache: synthetic groups of the type held in cache, as a prompt's row tiles are
//    (each tile serves every chunk of 8 tokens). Counts 2, 4 and 8; one column never
//    comes from a tile in cache.
//  - streamed: the same groups repeated over a buffer twice the L3, read once per pass by
//    every thread of the matmul's pool at once, as every weight byte of a decode step or of
//    a verify pass of up to 8 tokens is, once the model's weights outgrow the L3. Counts 1
//    to 8. Here the two streams cost more: on Zen 5 with both cores streaming, the 16-row
//    pass wins only from 4 columns (Q4_K, Q5_0) or 6 (Q5_K, Q6_K), where in cache it is
//    1.4-1.8x faster from 2; at one column it loses for every type.
// Both widths give bit-identical outputs (interleaved_x16_test), so the choice only ever
// changes speed.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/cpu/quant_dot.h"
#include "core/thread_pool.h"

namespace tandem::cpu {

// One column count's best times (seconds) over the same 16 rows: two 8-row calls, one
// 16-row call.
struct WidthTiming {
  int cols = 0;
  double x8 = 0, x16 = 0;
};

// The column counts measured in cache and streamed (above).
inline constexpr int kWidthColumns[] = {2, 4, 8};
inline constexpr int kStreamedWidthColumns[] = {1, 2, 3, 4, 6, 8};

// The smallest measured column count from which the 16-row pass is faster by more than
// `margin` (a fraction of the 8-row time) at that count and at every larger one; 0 when it
// is not at the largest. Within the margin the 8-row pass stays: it is the one every path has.
inline constexpr double kCachedMargin = 0.02;
int x16_min_cols_from(std::span<const WidthTiming> timings, double margin = kCachedMargin);

// Times k.dot_x8 (two calls) against k.dot_x16 (one) on 16 synthetic rows of k.weight, n
// elements each, and 64 activation rows, at each of kWidthColumns columns per call: calls
// alternate between the widths, the best of `trials` passes counts (a busy neighbour only
// ever slows a pass). A few milliseconds per type.
std::vector<WidthTiming> time_group_widths(const QuantDotKernel& k, int64_t n = 2048, int trials = 9);

// Same over `bytes` of k.weight's groups read once per pass (the 16 rows repeated; one
// 16-row call per 16 rows, no warm-up), at each of kStreamedWidthColumns, best of `trials`,
// with every thread of `pool` streaming its share at once (null: this thread alone). The
// threads matter: on Zen 5 with both cores streaming, the 16-row pass lost up to 4-6
// columns where one core alone found it winning from 2-3 (they share the memory bandwidth).
// About 65 ms per type on 2 cores for the 64 MiB probe of a 32 MiB L3, once per process.
//
// The streamed choice takes the 16-row pass only where it wins by more than this share:
// with other tenants' traffic the streamed ratios move by ±10% from one probe to the next
// on a shared host (Q6_K at 2 columns: 0.76-1.44 over a few minutes of Zen 5), and the
// 8-row pass, one stream, is the one that never loses much.
inline constexpr double kStreamedMargin = 0.10;
std::vector<WidthTiming> time_streamed_group_widths(const QuantDotKernel& k, size_t bytes, ThreadPool* pool = nullptr,
                                                    int64_t n = 2048, int trials = 3);
// The buffer the streamed measurement reads: twice the L3 (32 MiB assumed where cpuid does
// not say), between 32 and 256 MiB.
size_t streamed_probe_bytes();
// Whether weights of this many bytes, read in turn, come from memory rather than cache
// (more than the L3).
bool weights_stream(size_t weight_bytes);

// The column count from which the matmul runs k.dot_x16 on this CPU (0: never, also when
// the path has no 16-row pass): in cache (x16_min_cols) and streamed (..._streamed),
// measured on the first call for each 16-row kernel, then kept for the process (the
// streamed one with the first caller's pool: the threads a matmul runs on).
// TANDEM_X16=on (always, from one column) or off (never) overrides both, for A/B
// measurements.
int x16_min_cols(const QuantDotKernel& k);
int x16_min_cols_streamed(const QuantDotKernel& k, ThreadPool* pool = nullptr);
// TANDEM_X16 read once (a value other than those below is an error naming it): the
// matmul's contexts read it when they start, so a typo fails on any CPU.
int x16_override();
// TANDEM_X16's value: -1 for auto (unset, or "auto"), 1 for on, 0 for off; anything else is
// an error naming the variable.
int parse_x16_override(const char* value);

// Random weight rows of k.weight (quantized from normal floats, or random codes with finite
// scales where tandem has no quantizer), interleaved when `interleave` (rows a multiple of
// 8), and `tokens` activation rows quantized for k: operands for timing kernels.
struct SyntheticOperands {
  std::vector<uint8_t> w, act;
  size_t row_bytes = 0, act_row = 0;
};
SyntheticOperands synthetic_operands(const QuantDotKernel& k, int64_t n, int64_t rows, int64_t tokens, bool interleave,
                                     uint32_t seed = 7);

}  // namespace tandem::cpu
