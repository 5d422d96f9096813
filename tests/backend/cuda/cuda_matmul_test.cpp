// CUDA matmul, expert matmul and embedding against the CPU backend, every weight type, on
// the shapes of real models. The CPU runs with float activations (its f32 reference path:
// weights decoded exactly, f32 dots), so each bound below is the rounding the GPU path adds
// on purpose, stated per path (measured on the CPU by emulating each rounding, margin ~3x):
//
//   kIntBound   2e-2  integer mat-vec (T <= 8): activations rounded to 8 bits per block
//                     of 32 (half a step of max|x|/127 per element; ~0.4-0.7% seen);
//   kExactBound 1e-4  the same, against the CPU fed the GPU's own 8-bit activations
//                     (emulated here bit for bit): only f32 summation order differs, so
//                     this catches any decode or indexing slip the 2e-2 might hide;
//   kHalfBound  2e-3  GEMM paths (T > 8) on quantized and F16 weights: weights and x
//                     rounded to f16 (2^-11 relative each; ~3e-4 seen), by cuBLAS or, for
//                     quantized weights up to tile_gemm_max_tokens(), the tile GEMM;
//   kPathBound  1e-4  tile GEMM against dequantize + cuBLAS: the same f16 products, only
//                     the f32 summation order differs;
//   kBf16Bound  1e-2  GEMM path on BF16 weights: x rounded to bf16 (2^-9; ~2e-3 seen);
//   kF32Bound   1e-5  F32 GEMM and every float mat-vec: f32 summation order only.
// relative_error is max |got - want| / max |want| over the whole output.
//
// Quantized weights are random bytes with small finite f16 scales (every code and scale
// bit pattern occurs); one test uses weights quantized from Gaussians (realistic values).
// Embedding rows must be bit-identical to tandem::cpu::embed.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/expert_groups.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/quant_decode.h"
#include "core/error.h"
#include "core/half.h"
#include "quant/quantize.h"
#include "cuda_test_support.h"
#include "support/random_blocks.h"

namespace tandem::cuda {
namespace {

using testing::download;
using testing::relative_error;
using testing::upload;

constexpr double kIntBound = 2e-2, kExactBound = 1e-4, kHalfBound = 2e-3, kBf16Bound = 1e-2, kF32Bound = 1e-5,
                 kPathBound = 1e-4;

const DType kQuantTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,   DType::Q2_K,
                             DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS};
const DType kAllTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,   DType::Q8_0,   DType::Q2_K,
                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,   DType::IQ4_NL, DType::IQ4_XS,
                           DType::F32,  DType::F16,  DType::BF16};

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// The bound of the path a call takes.
double bound_for(DType t, int64_t tokens) {
  if (tokens <= kMatvecMaxTokens) return is_float(t) ? kF32Bound : kIntBound;
  if (t == DType::F32) return kF32Bound;
  return t == DType::BF16 ? kBf16Bound : kHalfBound;
}

// The CPU reference: float activations, all cores.
cpu::OpContext& cpu_reference() {
  static cpu::OpContext* ctx = [] {
    auto* c = new cpu::OpContext(static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 16u)), 8192);
    c->set_float_activations(true);
    return c;
  }();
  return *ctx;
}

// A weight {n_in, n_out, n_expert} in host memory and a copy on the device.
struct Weight {
  std::vector<uint8_t> bytes;
  DeviceBuffer dev;
  Tensor host, device;
};

Weight make_weight(DType type, int64_t n_in, int64_t n_out, int64_t n_expert, std::mt19937& rng,
                   bool from_gaussian = false) {
  Weight w;
  const DTypeInfo& info = dtype_info(type);
  const int64_t rows = n_out * n_expert;
  w.bytes.resize(static_cast<size_t>(n_in / info.block_elems * rows) * info.block_bytes);
  if (is_float(type) || from_gaussian) {
    std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(n_in)));
    std::vector<float> values(static_cast<size_t>(n_in * rows));
    for (float& v : values) v = normal(rng);
    quant::quantize_row(type, values.data(), w.bytes.data(), n_in * rows);
  } else {
    w.bytes = tandem::testing::random_blocks(type, static_cast<int64_t>(w.bytes.size() / info.block_bytes), rng);
  }
  w.host.name = std::string("w.") + std::string(dtype_name(type));
  w.host.type = type;
  w.host.ne = {n_in, n_out, n_expert, 1};
  w.host.n_dims = n_expert > 1 ? 3 : 2;
  w.host.data = w.bytes.data();
  w.dev = upload(w.bytes);
  w.device = w.host;
  w.device.data = w.dev.as<uint8_t>();
  w.device.device = Device::Cuda;
  return w;
}

std::vector<float> gaussian(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// x as the GPU's integer path sees it: each block of 32 rounded to its 8-bit codes.
std::vector<float> through_8bit(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    const float d = act_scale(amax);
    for (int i = 0; i < 32; ++i) out[b * 32 + i] = d * static_cast<float>(act_code(x[b * 32 + i], d));
  }
  return out;
}

// Worst error seen per (type, path), printed at the end of a test for the GPU run's log.
struct Worst {
  std::map<std::string, double> by_key;
  void note(const std::string& key, double e) { by_key[key] = std::max(by_key[key], e); }
  void print(const char* title) const {
    std::printf("%s (worst relative error per type and path):\n", title);
    for (const auto& [key, e] : by_key) std::printf("  %-28s %.3e\n", key.c_str(), e);
  }
};

std::string path_name(DType t, int64_t tokens) {
  if (tokens <= kMatvecMaxTokens) return std::string(dtype_name(t)) + (is_float(t) ? " matvec-f32" : " matvec-int8");
  const bool tile = !is_float(t) && tokens <= tile_gemm_max_tokens() && device_has_mma();
  return std::string(dtype_name(t)) + (tile ? " tile-gemm" : " gemm");
}

// Sets the tile GEMM threshold for a scope (restored after, also when a check fails).
class TileGemmThreshold {
 public:
  explicit TileGemmThreshold(int64_t tokens) : saved_(tile_gemm_max_tokens()) { set_tile_gemm_max_tokens(tokens); }
  ~TileGemmThreshold() { set_tile_gemm_max_tokens(saved_); }
  TileGemmThreshold(const TileGemmThreshold&) = delete;
  TileGemmThreshold& operator=(const TileGemmThreshold&) = delete;

 private:
  int64_t saved_;
};

struct Shape {
  int64_t n_in, n_out;
  std::vector<int64_t> tokens;
};

// Qwen2.5-0.5B attention (896: 32-element types and float only), a MoE expert's gate/up
// and down (Qwen3.5-35B-A3B), a large dense projection (GEMM in two row tiles).
const Shape kShapes[] = {
    {896, 896, {1, 2, 5, 8, 9, 33, 512}},
    {2048, 512, {1, 2, 5, 8, 9, 33, 512}},
    {512, 2048, {1, 2, 5, 8, 9, 33}},
    {4096, 4864, {1, 2, 5, 8, 9, 33}},
};

MatmulScratch scratch_of(const DeviceBuffer& b) { return {b.data(), b.bytes()}; }

void run_matmul_case(const CudaContext& ctx, const Weight& w, int64_t tokens, bool with_bias, const DeviceBuffer& scratch,
                     std::mt19937& rng, Worst& worst) {
  const int64_t n_in = w.host.ne[0], n_out = w.host.ne[1];
  const DType type = w.host.type;
  const std::vector<float> x = gaussian(static_cast<size_t>(tokens * n_in), rng);
  const std::vector<float> bias = gaussian(static_cast<size_t>(n_out), rng);
  const DeviceBuffer x_d = upload(x), bias_d = upload(bias);
  DeviceBuffer y_d(static_cast<size_t>(tokens * n_out) * sizeof(float));
  matmul(ctx, w.device, x_d.as<float>(), tokens, y_d.as<float>(), with_bias ? bias_d.as<float>() : nullptr,
         scratch_of(scratch));
  ctx.synchronize();
  const std::vector<float> got = download<float>(y_d, static_cast<size_t>(tokens * n_out));

  const std::string what = path_name(type, tokens) + " " + std::to_string(n_in) + "x" + std::to_string(n_out) +
                           " T=" + std::to_string(tokens) + (with_bias ? " +bias" : "");
  std::vector<float> want(got.size());
  cpu::matmul(cpu_reference(), w.host, x.data(), tokens, want.data(), with_bias ? bias.data() : nullptr);
  const double e = relative_error(got, want);
  worst.note(path_name(type, tokens), e);
  EXPECT_LE(e, bound_for(type, tokens)) << what;

  if (!is_float(type) && tokens <= kMatvecMaxTokens) {
    const std::vector<float> xq = through_8bit(x);
    cpu::matmul(cpu_reference(), w.host, xq.data(), tokens, want.data(), with_bias ? bias.data() : nullptr);
    const double exact = relative_error(got, want);
    worst.note(path_name(type, tokens) + " (same x)", exact);
    EXPECT_LE(exact, kExactBound) << what << ", against the same 8-bit activations";
  }
}

TEST(CudaMatmul, EveryTypeMatchesTheCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  const DeviceBuffer scratch(matmul_scratch_bytes(4096, 4864, 512));
  std::mt19937 rng(1);
  Worst worst;
  for (DType type : kAllTypes) {
    for (const Shape& shape : kShapes) {
      if (shape.n_in % dtype_info(type).block_elems != 0) continue;
      const Weight w = make_weight(type, shape.n_in, shape.n_out, 1, rng);
      for (int64_t tokens : shape.tokens) run_matmul_case(ctx, w, tokens, tokens % 2 == 1, scratch, rng, worst);
    }
  }
  worst.print("CudaMatmul.EveryTypeMatchesTheCpu");
}

TEST(CudaMatmul, WeightsQuantizedFromGaussians) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  const DeviceBuffer scratch(matmul_scratch_bytes(2048, 512, 64));
  std::mt19937 rng(2);
  Worst worst;
  for (DType type : kQuantTypes) {
    if (!quant::can_quantize(type)) continue;
    const Weight w = make_weight(type, 2048, 512, 1, rng, true);
    for (int64_t tokens : {1, 8, 64}) run_matmul_case(ctx, w, tokens, true, scratch, rng, worst);
  }
  worst.print("CudaMatmul.WeightsQuantizedFromGaussians");
}

// A scratch with room for only 64 weight rows: the GEMM runs in 64-row tiles, the last one
// partial, and each tile must land in its own output columns.
TEST(CudaMatmul, GemmInNarrowTiles) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  std::mt19937 rng(3);
  Worst worst;
  const int64_t n_in = 512, n_out = 200, tokens = 17;
  const DeviceBuffer scratch(((tokens * n_in * 2 + 255) / 256 * 256) + 64 * n_in * 2);
  for (DType type : {DType::Q4_K, DType::Q8_0}) {
    const Weight w = make_weight(type, n_in, n_out, 1, rng);
    run_matmul_case(ctx, w, tokens, true, scratch, rng, worst);
  }
}

// The two prompt paths for quantized weights, each forced, against the CPU and against each
// other: shapes with a partial row tile (200 rows), a partial K step (928 = 7.25 x 128, for
// the 32-element types) and token counts around the 64-token tile; one call with x not
// 16-byte aligned (the tile GEMM's float4 loads need it: such a call must take cuBLAS).
TEST(CudaMatmul, TileGemmAndCublasAgree) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  if (!device_has_mma()) GTEST_SKIP() << "no tensor-core mma (compute capability < 8.0)";
  CudaContext ctx;
  std::mt19937 rng(4);
  Worst worst;
  const DeviceBuffer scratch(matmul_scratch_bytes(2048, 2048, 200));
  struct TileShape {
    int64_t n_in, n_out;
  };
  for (DType type : kQuantTypes) {
    for (const TileShape shape : {TileShape{2048, 512}, TileShape{512, 200}, TileShape{928, 200}}) {
      if (shape.n_in % dtype_info(type).block_elems != 0) continue;
      const Weight w = make_weight(type, shape.n_in, shape.n_out, 1, rng);
      for (const int64_t tokens : {9, 17, 64, 65, 128, 200}) {
        const std::vector<float> x = gaussian(static_cast<size_t>((tokens + 4) * shape.n_in), rng);
        const DeviceBuffer x_d = upload(x);
        DeviceBuffer y_d(static_cast<size_t>(tokens * shape.n_out) * sizeof(float));
        auto run = [&](int64_t threshold, const float* x_dev) {
          TileGemmThreshold scope(threshold);
          TANDEM_CUDA_CHECK(cudaMemset(y_d.data(), 0xFF, y_d.bytes()));  // NaNs: every value must be written
          matmul(ctx, w.device, x_dev, tokens, y_d.as<float>(), nullptr, scratch_of(scratch));
          ctx.synchronize();
          return download<float>(y_d, static_cast<size_t>(tokens * shape.n_out));
        };
        const std::string what = std::string(dtype_name(type)) + " " + std::to_string(shape.n_in) + "x" +
                                 std::to_string(shape.n_out) + " T=" + std::to_string(tokens);
        const std::vector<float> tile = run(1 << 30, x_d.as<float>()), cublas = run(0, x_d.as<float>());
        std::vector<float> want(tile.size());
        cpu::matmul(cpu_reference(), w.host, x.data(), tokens, want.data(), nullptr);
        const double e_tile = relative_error(tile, want), e_cublas = relative_error(cublas, want);
        const double e_paths = relative_error(tile, cublas);
        worst.note(std::string(dtype_name(type)) + " tile-gemm", e_tile);
        worst.note(std::string(dtype_name(type)) + " tile vs cublas", e_paths);
        EXPECT_LE(e_tile, kHalfBound) << what << ", tile GEMM";
        EXPECT_LE(e_cublas, kHalfBound) << what << ", cuBLAS";
        EXPECT_LE(e_paths, kPathBound) << what << ", tile GEMM against cuBLAS";
        if (tokens == 17) {  // x one float in: not 16-byte aligned, so cuBLAS even when the tile GEMM is asked for
          const std::vector<float> shifted = run(1 << 30, x_d.as<float>() + 1);
          cpu::matmul(cpu_reference(), w.host, x.data() + 1, tokens, want.data(), nullptr);
          EXPECT_LE(relative_error(shifted, want), kHalfBound) << what << ", unaligned x";
        }
      }
    }
  }
  worst.print("CudaMatmul.TileGemmAndCublasAgree");
}

// Expert outputs: for each (expert, x row, y row), row y of got must be W[expert] x[x row],
// within the path's bound against the CPU on x, and within the exact bound against the CPU
// on the GPU's own 8-bit x.
void expect_expert_rows(const Weight& w, const std::vector<float>& x, const std::vector<float>& got,
                        const std::vector<std::array<int64_t, 3>>& rows, const std::string& what, Worst& worst) {
  const DType type = w.host.type;
  const int64_t n_in = w.host.ne[0], n_out = w.host.ne[1];
  const std::vector<float> xq = is_float(type) ? x : through_8bit(x);
  std::vector<float> mine, want(rows.size() * n_out), want_same_x(want.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto [expert, x_row, y_row] = rows[i];
    const Tensor m = w.host.matrix(expert);
    cpu::matmul(cpu_reference(), m, x.data() + x_row * n_in, 1, want.data() + i * n_out);
    cpu::matmul(cpu_reference(), m, xq.data() + x_row * n_in, 1, want_same_x.data() + i * n_out);
    mine.insert(mine.end(), got.begin() + y_row * n_out, got.begin() + (y_row + 1) * n_out);
  }
  const double e = relative_error(mine, want), exact = relative_error(mine, want_same_x);
  worst.note(path_name(type, 1), e);
  worst.note(path_name(type, 1) + " (same x)", exact);
  EXPECT_LE(e, bound_for(type, 1)) << what;
  EXPECT_LE(exact, is_float(type) ? kF32Bound : kExactBound) << what << ", against the same activations";
}

TEST(CudaMatmul, ExpertsMatchPerExpertCpuMatmuls) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  std::mt19937 rng(4);
  Worst worst;
  const int64_t n_expert = 4, n_slots = 8;
  const std::vector<int32_t> ids = {2, 0, 3, 3, 1, 2, 0, 1};
  const DeviceBuffer ids_d = upload(ids);
  const DeviceBuffer scratch(matmul_experts_scratch_bytes(2048, n_slots));
  for (DType type : kAllTypes) {
    const std::pair<int64_t, int64_t> shapes[] = {{2048, 512}, {512, 2048}};
    for (auto [n_in, n_out] : shapes) {
      const Weight w = make_weight(type, n_in, n_out, n_expert, rng);
      // One token shared by every slot (decode), two tokens of four slots each, one per slot.
      for (int64_t x_rows : {1, 2, 8}) {
        const std::vector<float> x = gaussian(static_cast<size_t>(x_rows * n_in), rng);
        const DeviceBuffer x_d = upload(x);
        DeviceBuffer y_d(static_cast<size_t>(n_slots * n_out) * sizeof(float));
        matmul_experts(ctx, w.device, x_d.as<float>(), x_rows, ids_d.as<int32_t>(), n_slots, y_d.as<float>(),
                       scratch_of(scratch));
        ctx.synchronize();
        const std::vector<float> got = download<float>(y_d, static_cast<size_t>(n_slots * n_out));
        std::vector<std::array<int64_t, 3>> rows;
        for (int64_t s = 0; s < n_slots; ++s) rows.push_back({ids[static_cast<size_t>(s)], s / (n_slots / x_rows), s});
        expect_expert_rows(w, x, got, rows,
                           path_name(type, 1) + " experts " + std::to_string(n_in) + "x" + std::to_string(n_out) +
                               " x_rows=" + std::to_string(x_rows),
                           worst);
      }
    }
  }
  worst.print("CudaMatmul.ExpertsMatchPerExpertCpuMatmuls");
}

// Prompt MoE chunks: chunk c applies expert ids[c] to its own 8 activation rows (the
// layout of expert_groups.h), every type, both expert shapes; a bad id gives NaN rows.
TEST(CudaMatmul, ExpertChunksMatchPerExpertCpuMatmuls) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  std::mt19937 rng(6);
  Worst worst;
  const int64_t n_expert = 4;
  const std::vector<int32_t> ids = {1, 3, 3, 0, 2, 1, 4};  // the last chunk's id is out of range
  const auto n_chunks = static_cast<int64_t>(ids.size()), rows = n_chunks * kChunkTokens;
  const DeviceBuffer ids_d = upload(ids);
  const DeviceBuffer scratch(matmul_experts_scratch_bytes(2048, rows));
  for (DType type : kAllTypes) {
    const std::pair<int64_t, int64_t> shapes[] = {{2048, 512}, {512, 2048}};
    for (auto [n_in, n_out] : shapes) {
      const Weight w = make_weight(type, n_in, n_out, n_expert, rng);
      std::vector<float> x = gaussian(static_cast<size_t>(rows * n_in), rng);
      std::fill_n(x.begin() + (kChunkTokens - 3) * n_in, 3 * n_in, 0.0f);  // padding rows are zeros
      const DeviceBuffer x_d = upload(x);
      DeviceBuffer y_d(static_cast<size_t>(rows * n_out) * sizeof(float));
      matmul_expert_chunks(ctx, w.device, x_d.as<float>(), n_chunks, ids_d.as<int32_t>(), y_d.as<float>(),
                           scratch_of(scratch));
      ctx.synchronize();
      const std::vector<float> got = download<float>(y_d, static_cast<size_t>(rows * n_out));
      const int64_t good_rows = (n_chunks - 1) * kChunkTokens;
      for (int64_t i = good_rows * n_out; i < rows * n_out; ++i) {
        ASSERT_TRUE(std::isnan(got[static_cast<size_t>(i)])) << dtype_name(type) << ": the bad id's chunk";
      }
      std::vector<std::array<int64_t, 3>> rows;
      for (int64_t r = 0; r < good_rows; ++r) rows.push_back({ids[static_cast<size_t>(r / kChunkTokens)], r, r});
      expect_expert_rows(w, x, got, rows,
                         path_name(type, 1) + " expert chunks " + std::to_string(n_in) + "x" + std::to_string(n_out), worst);
    }
  }
  worst.print("CudaMatmul.ExpertChunksMatchPerExpertCpuMatmuls");
}

TEST(CudaMatmul, BadExpertIdGivesNanRow) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  std::mt19937 rng(5);
  const int64_t n_in = 512, n_out = 64;
  for (DType type : {DType::Q4_K, DType::F16}) {
    const Weight w = make_weight(type, n_in, n_out, 2, rng);
    const std::vector<int32_t> ids = {1, 2, -1, 0};
    const DeviceBuffer ids_d = upload(ids);
    const DeviceBuffer x_d = upload(gaussian(n_in, rng));
    const DeviceBuffer scratch(matmul_experts_scratch_bytes(n_in, 1));
    DeviceBuffer y_d(4 * n_out * sizeof(float));
    matmul_experts(ctx, w.device, x_d.as<float>(), 1, ids_d.as<int32_t>(), 4, y_d.as<float>(), scratch_of(scratch));
    ctx.synchronize();
    const std::vector<float> y = download<float>(y_d, 4 * n_out);
    for (int64_t o = 0; o < n_out; ++o) {
      EXPECT_TRUE(std::isfinite(y[o]) && std::isfinite(y[3 * n_out + o])) << dtype_name(type);
      EXPECT_TRUE(std::isnan(y[n_out + o]) && std::isnan(y[2 * n_out + o])) << dtype_name(type);
    }
  }
}

TEST(CudaEmbed, RowsAreBitIdenticalToTheCpu) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  std::mt19937 rng(6);
  const int64_t vocab = 300;
  std::vector<int32_t> tokens = {0, 299, 17, 17, 5};
  for (int i = 0; i < 40; ++i) tokens.push_back(static_cast<int32_t>(rng() % vocab));
  const DeviceBuffer tokens_d = upload(tokens);
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (DType type : kAllTypes) {
    for (int64_t dim : {896, 2048}) {
      if (dim % dtype_info(type).block_elems != 0) continue;
      const Weight table = make_weight(type, dim, vocab, 1, rng);
      DeviceBuffer out_d(static_cast<size_t>(n * dim) * sizeof(float));
      embed(ctx.stream(), table.device, tokens_d.as<int32_t>(), n, out_d.as<float>());
      ctx.synchronize();
      const std::vector<float> got = download<float>(out_d, static_cast<size_t>(n * dim));
      std::vector<float> want(got.size());
      cpu::embed(table.host, tokens, want.data());
      size_t mismatches = 0, first = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        if (f32_to_bits(got[i]) != f32_to_bits(want[i]) && mismatches++ == 0) first = i;
      }
      EXPECT_EQ(mismatches, 0u) << dtype_name(type) << " D=" << dim << ": first at token " << first / dim
                                << " element " << first % dim << ": got " << got[first] << ", cpu " << want[first];
    }
  }
}

TEST(CudaEmbed, OutOfVocabularyIdGivesNanRow) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  std::mt19937 rng(7);
  const Weight table = make_weight(DType::Q6_K, 256, 10, 1, rng);
  const std::vector<int32_t> tokens = {3, 10, -1};
  const DeviceBuffer tokens_d = upload(tokens);
  DeviceBuffer out_d(3 * 256 * sizeof(float));
  embed(ctx.stream(), table.device, tokens_d.as<int32_t>(), 3, out_d.as<float>());
  ctx.synchronize();
  const std::vector<float> out = download<float>(out_d, 3 * 256);
  for (int i = 0; i < 256; ++i) {
    EXPECT_TRUE(std::isfinite(out[i]));
    EXPECT_TRUE(std::isnan(out[256 + i]) && std::isnan(out[512 + i]));
  }
}

// The message of the tandem::Error fn throws ("" when it throws none).
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CudaMatmul, BadArgumentsAreClearErrors) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  std::mt19937 rng(8);
  const Weight w = make_weight(DType::Q4_K, 512, 64, 1, rng);
  const DeviceBuffer x_d(9 * 512 * sizeof(float)), y_d(9 * 64 * sizeof(float));
  const DeviceBuffer scratch(matmul_scratch_bytes(512, 64, 8));
  const auto* x = x_d.as<float>();
  auto* y = y_d.as<float>();
  const MatmulScratch s = scratch_of(scratch);

  Tensor unsupported = w.device;
  unsupported.type = DType::Q8_K;
  EXPECT_NE(error_of([&] { matmul(ctx, unsupported, x, 1, y, nullptr, s); }).find("Q8_K is not supported"), std::string::npos);
  EXPECT_NE(error_of([&] { matmul(ctx, w.host, x, 1, y, nullptr, s); }).find("host memory"), std::string::npos);
  EXPECT_NE(error_of([&] { matmul(ctx, w.device, x, 9, y, nullptr, s); }).find("scratch"), std::string::npos);
  EXPECT_NE(error_of([&] { matmul(ctx, w.device, x, 1, y, nullptr, MatmulScratch{}); }).find("scratch"), std::string::npos);
  Tensor odd = w.device;
  odd.ne[0] = 500;
  EXPECT_NE(error_of([&] { matmul(ctx, odd, x, 1, y, nullptr, s); }).find("not a multiple"), std::string::npos);
  Tensor stacked = w.device;
  stacked.ne = {512, 32, 2, 1};
  EXPECT_NE(error_of([&] { matmul(ctx, stacked, x, 1, y, nullptr, s); }).find("matmul_experts"), std::string::npos);
  const DeviceBuffer ids_d(4 * sizeof(int32_t));
  EXPECT_NE(error_of([&] { matmul_experts(ctx, stacked, x, 3, ids_d.as<int32_t>(), 4, y, s); }).find("do not divide"),
            std::string::npos);
  EXPECT_NE(error_of([&] { embed(ctx.stream(), unsupported, ids_d.as<int32_t>(), 1, y); }).find("not supported"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { matmul(ctx, w.device, x, 0, y, nullptr, MatmulScratch{}); }), "");  // nothing to do
}

// Not a correctness test: the achieved weight-read bandwidth of the decode mat-vec and the
// GEMM rate at T = 512, printed for the first GPU run (compare with bench/ roofline).
TEST(CudaMatmul, SpeedReport) {
  TANDEM_REQUIRE_CUDA_DEVICE();
  CudaContext ctx;
  std::mt19937 rng(9);
  const int64_t n_in = 4096, n_out = 16384;
  const DeviceBuffer scratch(matmul_scratch_bytes(n_in, n_out, 512));
  const DeviceBuffer x_d = upload(gaussian(512 * n_in, rng));
  DeviceBuffer y_d(static_cast<size_t>(512 * n_out) * sizeof(float));
  cudaEvent_t start, stop;
  TANDEM_CUDA_CHECK(cudaEventCreate(&start));
  TANDEM_CUDA_CHECK(cudaEventCreate(&stop));
  // Seconds per matmul of `tokens` tokens: one warm-up, then the mean of reps on the stream.
  auto seconds_per_call = [&](const Weight& w, int64_t tokens, int reps) {
    matmul(ctx, w.device, x_d.as<float>(), tokens, y_d.as<float>(), nullptr, scratch_of(scratch));
    TANDEM_CUDA_CHECK(cudaEventRecord(start, ctx.stream()));
    for (int r = 0; r < reps; ++r) {
      matmul(ctx, w.device, x_d.as<float>(), tokens, y_d.as<float>(), nullptr, scratch_of(scratch));
    }
    TANDEM_CUDA_CHECK(cudaEventRecord(stop, ctx.stream()));
    TANDEM_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    TANDEM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return ms / 1e3 / reps;
  };
  std::printf("matmul %lldx%lld: decode GB/s of weights (T=1, T=8), prompt TFLOP/s (T=512)\n",
              static_cast<long long>(n_in), static_cast<long long>(n_out));
  for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS, DType::F16}) {
    const Weight w = make_weight(type, n_in, n_out, 1, rng);
    double rate[3] = {};
    const int64_t tokens_of[3] = {1, 8, 512};
    for (int k = 0; k < 3; ++k) {
      const int64_t tokens = tokens_of[k];
      const double seconds = seconds_per_call(w, tokens, tokens == 512 ? 5 : 50);
      rate[k] = tokens == 512 ? 2.0 * n_in * n_out * tokens / seconds / 1e12 : w.bytes.size() / seconds / 1e9;
    }
    std::printf("  %-7s %7.0f GB/s %7.0f GB/s %7.1f TFLOP/s\n", std::string(dtype_name(type)).c_str(), rate[0], rate[1],
                rate[2]);
  }
  // Where the tile GEMM and dequantize + cuBLAS cross (kTileGemmMaxTokens is an estimate
  // until this runs): TFLOP/s of each path, each forced, per token count.
  if (device_has_mma()) {
    const int64_t token_counts[] = {16, 32, 64, 128, 256, 512};
    std::printf("prompt matmul %lldx%lld, TFLOP/s tile GEMM / cuBLAS at T =", static_cast<long long>(n_in),
                static_cast<long long>(n_out));
    for (const int64_t tokens : token_counts) std::printf(" %lld", static_cast<long long>(tokens));
    std::printf("\n");
    for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS}) {
      const Weight w = make_weight(type, n_in, n_out, 1, rng);
      std::printf("  %-7s", std::string(dtype_name(type)).c_str());
      for (const int64_t tokens : token_counts) {
        double tflops[2] = {};
        for (int path = 0; path < 2; ++path) {
          TileGemmThreshold scope(path == 0 ? int64_t{1} << 30 : 0);
          tflops[path] = 2.0 * n_in * n_out * tokens / seconds_per_call(w, tokens, 10) / 1e12;
        }
        std::printf("  %5.1f/%5.1f", tflops[0], tflops[1]);
      }
      std::printf("\n");
    }
  }
  TANDEM_CUDA_CHECK(cudaEventDestroy(start));
  TANDEM_CUDA_CHECK(cudaEventDestroy(stop));
}

}  // namespace
}  // namespace tandem::cuda
