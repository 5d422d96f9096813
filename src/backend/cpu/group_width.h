// How many interleaved groups one kernel call takes: measured per CPU, not assumed.
//
// Where a path has a 16-row pass (QuantDotKernel::dot_x16: two groups of 8 rows per call),
// it loads and broadcasts each activation chunk once for 16 rows instead of 8, but holds
// twice the accumulators and unpacked codes. Whether that pays depends on the core's
// registers, ports and load bandwidth, and on how many activation columns a call has: a
// win at a prompt's 8 columns can be a loss at fewer. So the matmul asks, once per weight
// type and process, which width is faster at 2, 4 and 8 columns on synthetic groups of
// that type held in cache (the matmul's row tiles are), and uses the 16-row pass from the
// column count where it wins. One column (decode) always takes the 8-row pass: there every
// weight byte streams from memory once, and one stream is read faster than the two a
// 16-row pass walks at once, even where the 16-row pass wins in cache (Zen 5, 1.5B Q4_K_M:
// decode 37-51 tok/s with Q4_K's 16-row pass at one column, 44-63 without, alternated). Both
// widths give bit-identical outputs (interleaved_x16_test), so the choice only ever
// changes speed.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/cpu/quant_dot.h"

namespace tandem::cpu {

// One column count's best times (seconds) over the same 16 rows: two 8-row calls, one
// 16-row call.
struct WidthTiming {
  int cols = 0;
  double x8 = 0, x16 = 0;
};

// The column counts measured (one column never runs the 16-row pass, above).
inline constexpr int kWidthColumns[] = {2, 4, 8};

// The smallest measured column count from which the 16-row pass is faster by more than
// `margin` (a fraction of the 8-row time) at that count and at every larger one; 0 when it
// is not at the largest. Within the margin the 8-row pass stays: it is the one every path has.
int x16_min_cols_from(std::span<const WidthTiming> timings, double margin = 0.02);

// Times k.dot_x8 (two calls) against k.dot_x16 (one) on 16 synthetic rows of k.weight, n
// elements each, and 64 activation rows, at each of kWidthColumns columns per call: calls
// alternate between the widths, the best of `trials` passes counts (a busy neighbour only
// ever slows a pass). A few milliseconds per type.
std::vector<WidthTiming> time_group_widths(const QuantDotKernel& k, int64_t n = 2048, int trials = 9);

// The column count from which the matmul runs k.dot_x16 on this CPU (0: never, also when
// the path has no 16-row pass): measured on the first call for each weight type, then kept
// for the process. TANDEM_X16=on (always) or off (never) overrides, for A/B measurements.
int x16_min_cols(const QuantDotKernel& k);
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
