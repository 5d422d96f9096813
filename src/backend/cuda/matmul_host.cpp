// Host side of the CUDA matmul and embedding: argument checks (a bad call is a tandem::Error
// naming the weight and the value, before anything is launched), scratch carving, the
// choice between the mat-vec and the GEMM path, and the cuBLAS calls. Kernels: matmul.cu.
#include <cublas_v2.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <string_view>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/expert_groups.h"
#include "backend/cuda/matmul.h"
#include "core/error.h"

namespace tandem::cuda {
namespace {

constexpr size_t kAlign = 256;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

bool is_float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// 8-bit activations of `rows` rows: codes, then (d, d * sum) per block of 32.
size_t activation_bytes(int64_t rows, int64_t n_in) {
  return align_up(static_cast<size_t>(rows * n_in)) + align_up(static_cast<size_t>(rows * (n_in / 32)) * 2 * sizeof(float));
}

// f16 weight rows per GEMM tile that matmul_scratch_bytes plans for: kWeightTileBytes worth,
// a multiple of 64 (aligned output columns for cuBLAS), at least 64, at most n_out.
int64_t planned_tile_rows(int64_t n_in, int64_t n_out) {
  int64_t rows = static_cast<int64_t>(kWeightTileBytes / (static_cast<size_t>(n_in) * 2)) / 64 * 64;
  rows = std::max<int64_t>(rows, 64);
  return std::min(rows, n_out);
}

std::string_view name_of(const Tensor& w) { return w.name.empty() ? std::string_view("(unnamed)") : w.name; }

// Checks shared by matmul and matmul_experts. `stacked`: a 3-D stack of experts.
void check_weight(const char* op, const Tensor& w, bool stacked) {
  if (w.device != Device::Cuda) fail("cuda {} '{}': the weight is in host memory, not on the GPU", op, name_of(w));
  if (w.data == nullptr) fail("cuda {} '{}': the weight has no data", op, name_of(w));
  if (!cuda_supports_weight(w.type)) {
    fail("cuda {} '{}': weight type {} is not supported on the GPU", op, name_of(w), dtype_name(w.type));
  }
  if (reinterpret_cast<uintptr_t>(w.data) % 16 != 0) {
    fail("cuda {} '{}': weight data is not 16-byte aligned", op, name_of(w));
  }
  const int64_t n_in = w.ne[0], n_out = w.ne[1];
  const uint32_t block = dtype_info(w.type).block_elems;
  if (n_in <= 0 || n_out <= 0 || w.ne[2] <= 0 || w.ne[3] <= 0) {
    fail("cuda {} '{}': bad shape {{{}, {}, {}, {}}}", op, name_of(w), w.ne[0], w.ne[1], w.ne[2], w.ne[3]);
  }
  if (n_in % block != 0) {
    fail("cuda {} '{}': row of {} is not a multiple of the {}-element blocks of {}", op, name_of(w), n_in, block,
         dtype_name(w.type));
  }
  if (!is_float_type(w.type) && n_in % 32 != 0) fail("cuda {} '{}': row of {} is not a multiple of 32", op, name_of(w), n_in);
  if (n_in > std::numeric_limits<int>::max() || n_out > std::numeric_limits<int>::max()) {
    fail("cuda {} '{}': shape {{{}, {}}} is too large for one GEMM", op, name_of(w), n_in, n_out);
  }
  if (stacked) {
    if (w.ne[3] != 1) fail("cuda {} '{}': expected {{n_in, n_out, n_expert}}, got 4 dimensions", op, name_of(w));
  } else if (w.ne[2] != 1 || w.ne[3] != 1) {
    fail("cuda {} '{}': expected a 2-D weight, got {{{}, {}, {}, {}}} (experts go through matmul_experts)", op,
         name_of(w), w.ne[0], w.ne[1], w.ne[2], w.ne[3]);
  }
}

void check_scratch(const char* op, const Tensor& w, const MatmulScratch& scratch, size_t need, int64_t rows) {
  if (scratch.bytes < need) {
    fail("cuda {} '{}': {} rows need {} bytes of scratch, {} given (size it with matmul_scratch_bytes)", op,
         name_of(w), rows, need, scratch.bytes);
  }
  if (need != 0 && (scratch.data == nullptr || reinterpret_cast<uintptr_t>(scratch.data) % kAlign != 0)) {
    fail("cuda {} '{}': scratch must be a {}-byte aligned device pointer", op, name_of(w), kAlign);
  }
}

// Quantizes `rows` activation rows into the scratch for the integer mat-vec.
void quantize_into_scratch(cudaStream_t stream, const float* x, int64_t rows, int64_t n_in, MatmulScratch scratch,
                           detail::MatvecArgs& a) {
  auto* base = static_cast<uint8_t*>(scratch.data);
  auto* codes = reinterpret_cast<int8_t*>(base);
  auto* scales = reinterpret_cast<float*>(base + align_up(static_cast<size_t>(rows * n_in)));
  detail::quantize_activations(stream, x, rows, n_in, codes, scales);
  a.aq = codes;
  a.ad = scales;
}

// y (column-major n_out x T, ld n_out) = A^T (k x m, ld k) * B (k x T, ld k).
void gemm(const CudaContext& ctx, int64_t m, int64_t n_tokens, int64_t k, const void* a, const void* b,
          cudaDataType_t type, float* y, int64_t ldc) {
  const float one = 1.0f, zero = 0.0f;
  TANDEM_CUBLAS_CHECK(cublasGemmEx(ctx.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n_tokens),
                                   static_cast<int>(k), &one, a, type, static_cast<int>(k), b, type, static_cast<int>(k),
                                   &zero, y, CUDA_R_32F, static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

namespace {
std::atomic<int64_t> g_tile_gemm_max_tokens{kTileGemmMaxTokens};
}  // namespace

int64_t tile_gemm_max_tokens() { return g_tile_gemm_max_tokens.load(std::memory_order_relaxed); }
void set_tile_gemm_max_tokens(int64_t tokens) { g_tile_gemm_max_tokens.store(tokens, std::memory_order_relaxed); }

bool cuda_supports_weight(DType type) {
  switch (type) {
    case DType::F32: case DType::F16: case DType::BF16:
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
    case DType::IQ4_NL: case DType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

size_t matmul_scratch_bytes(int64_t n_in, int64_t n_out, int64_t max_tokens) {
  if (n_in <= 0 || n_out <= 0 || max_tokens <= 0) return 0;
  const size_t matvec = activation_bytes(std::min(max_tokens, kMatvecMaxTokens), n_in);
  if (max_tokens <= kMatvecMaxTokens) return matvec;
  const size_t gemm = align_up(static_cast<size_t>(max_tokens * n_in) * 2) +
                      align_up(static_cast<size_t>(planned_tile_rows(n_in, n_out) * n_in) * 2);
  return std::max(matvec, gemm);
}

size_t matmul_experts_scratch_bytes(int64_t n_in, int64_t n_x_rows) {
  if (n_in <= 0 || n_x_rows <= 0) return 0;
  return activation_bytes(n_x_rows, n_in);
}

void matmul(const CudaContext& ctx, const Tensor& w, const float* x, int64_t n_tokens, float* y, const float* bias,
            MatmulScratch scratch) {
  check_weight("matmul", w, false);
  if (n_tokens < 0) fail("cuda matmul '{}': negative token count {}", name_of(w), n_tokens);
  if (n_tokens == 0) return;
  if (x == nullptr || y == nullptr) fail("cuda matmul '{}': null activation pointer", name_of(w));
  if (n_tokens > std::numeric_limits<int>::max()) fail("cuda matmul '{}': {} tokens is too many", name_of(w), n_tokens);
  const int64_t n_in = w.ne[0], n_out = w.ne[1];
  const cudaStream_t stream = ctx.stream();

  if (n_tokens <= kMatvecMaxTokens) {
    detail::MatvecArgs a;
    a.type = w.type;
    a.w = w.data;
    a.row_bytes = w.row_bytes();
    a.n_in = n_in;
    a.n_out = n_out;
    a.tokens = n_tokens;
    a.y = y;
    a.bias = bias;
    if (is_float_type(w.type)) {
      a.x = x;
    } else {
      check_scratch("matmul", w, scratch, activation_bytes(n_tokens, n_in), n_tokens);
      quantize_into_scratch(stream, x, n_tokens, n_in, scratch, a);
    }
    detail::matvec(stream, a);
    return;
  }

  if (w.type == DType::F32) {
    gemm(ctx, n_out, n_tokens, n_in, w.data, x, CUDA_R_32F, y, n_out);
  } else if (w.type == DType::F16 || w.type == DType::BF16) {
    const size_t x16 = align_up(static_cast<size_t>(n_tokens * n_in) * 2);
    check_scratch("matmul", w, scratch, x16, n_tokens);
    const bool half = w.type == DType::F16;
    detail::convert_activations(stream, x, n_tokens * n_in, scratch.data, half);
    gemm(ctx, n_out, n_tokens, n_in, w.data, scratch.data, half ? CUDA_R_16F : CUDA_R_16BF, y, n_out);
  } else if (n_tokens <= tile_gemm_max_tokens() && reinterpret_cast<uintptr_t>(x) % 16 == 0 && device_has_mma()) {
    detail::tile_gemm(stream, w.type, w.data, w.row_bytes(), n_in, n_out, x, n_tokens, y);
  } else {
    // x in f16, then as many weight rows per tile as the scratch holds (a multiple of 64
    // unless the whole matrix fits).
    const size_t x16 = align_up(static_cast<size_t>(n_tokens * n_in) * 2);
    const size_t row_f16 = static_cast<size_t>(n_in) * 2;
    const int64_t min_rows = std::min<int64_t>(n_out, 64);
    check_scratch("matmul", w, scratch, x16 + min_rows * row_f16, n_tokens);
    int64_t tile = static_cast<int64_t>((scratch.bytes - x16) / row_f16);
    tile = tile >= n_out ? n_out : tile / 64 * 64;
    auto* x_half = static_cast<uint8_t*>(scratch.data);
    uint8_t* w_half = x_half + x16;
    detail::convert_activations(stream, x, n_tokens * n_in, x_half, true);
    for (int64_t r0 = 0; r0 < n_out; r0 += tile) {
      const int64_t rows = std::min(tile, n_out - r0);
      detail::dequantize_rows_f16(stream, w.type, w.data, w.row_bytes(), r0, rows, n_in, w_half);
      gemm(ctx, rows, n_tokens, n_in, w_half, x_half, CUDA_R_16F, y + r0, n_out);
    }
  }
  if (bias != nullptr) detail::add_bias(stream, y, bias, n_tokens, n_out);
}

namespace {

// One mat-vec launch over expert slots (matmul_experts, matmul_expert_chunks): slot s
// applies expert ids[s] to `tokens` activation rows from s * x_step / x_share.
void expert_matvec(const char* op, const CudaContext& ctx, const Tensor& w, const float* x, int64_t n_x_rows,
                   const int32_t* ids, int32_t id_base, int64_t n_slots, int64_t tokens, int64_t x_step,
                   int64_t x_share, float* y, MatmulScratch scratch) {
  if (n_slots > 65535) fail("cuda {} '{}': {} slots, at most 65535 per call", op, name_of(w), n_slots);
  const int64_t n_in = w.ne[0];
  detail::MatvecArgs a;
  a.type = w.type;
  a.w = w.data;
  a.row_bytes = w.row_bytes();
  a.matrix_bytes = a.row_bytes * static_cast<uint64_t>(w.ne[1]);
  a.n_in = n_in;
  a.n_out = w.ne[1];
  a.ids = ids;
  a.id_base = id_base;
  a.n_matrices = w.ne[2];
  a.slots = n_slots;
  a.x_share = x_share;
  a.x_step = x_step;
  a.tokens = tokens;
  a.y = y;
  if (is_float_type(w.type)) {
    a.x = x;
  } else {
    check_scratch(op, w, scratch, activation_bytes(n_x_rows, n_in), n_x_rows);
    quantize_into_scratch(ctx.stream(), x, n_x_rows, n_in, scratch, a);
  }
  detail::matvec(ctx.stream(), a);
}

}  // namespace

void matmul_experts(const CudaContext& ctx, const Tensor& w, const float* x, int64_t n_x_rows, const int32_t* ids,
                    int64_t n_slots, float* y, MatmulScratch scratch) {
  check_weight("matmul_experts", w, true);
  if (n_slots < 0) fail("cuda matmul_experts '{}': negative slot count {}", name_of(w), n_slots);
  if (n_slots == 0) return;
  if (x == nullptr || y == nullptr || ids == nullptr) fail("cuda matmul_experts '{}': null pointer argument", name_of(w));
  if (n_x_rows <= 0 || n_slots % n_x_rows != 0) {
    fail("cuda matmul_experts '{}': {} activation rows do not divide {} slots", name_of(w), n_x_rows, n_slots);
  }
  expert_matvec("matmul_experts", ctx, w, x, n_x_rows, ids, 0, n_slots, 1, 1, n_slots / n_x_rows, y, scratch);
}

void matmul_expert_chunks(const CudaContext& ctx, const Tensor& w, const float* x, int64_t n_chunks,
                          const int32_t* ids, float* y, MatmulScratch scratch, int32_t first_expert) {
  check_weight("matmul_expert_chunks", w, true);
  if (n_chunks < 0) fail("cuda matmul_expert_chunks '{}': negative chunk count {}", name_of(w), n_chunks);
  if (n_chunks == 0) return;
  if (x == nullptr || y == nullptr || ids == nullptr) {
    fail("cuda matmul_expert_chunks '{}': null pointer argument", name_of(w));
  }
  static_assert(kChunkTokens == kMatvecMaxTokens, "a chunk is one mat-vec's token columns");
  if (first_expert < 0) fail("cuda matmul_expert_chunks '{}': negative first expert {}", name_of(w), first_expert);
  expert_matvec("matmul_expert_chunks", ctx, w, x, n_chunks * kChunkTokens, ids, first_expert, n_chunks, kChunkTokens,
                kChunkTokens, 1, y, scratch);
}

void embed(cudaStream_t stream, const Tensor& table, const int32_t* tokens, int64_t n, float* out) {
  if (table.device != Device::Cuda) fail("cuda embed '{}': the table is in host memory, not on the GPU", name_of(table));
  if (table.data == nullptr) fail("cuda embed '{}': the table has no data", name_of(table));
  if (!cuda_supports_weight(table.type)) {
    fail("cuda embed '{}': table type {} is not supported on the GPU", name_of(table), dtype_name(table.type));
  }
  if (reinterpret_cast<uintptr_t>(table.data) % 16 != 0) fail("cuda embed '{}': table data is not 16-byte aligned", name_of(table));
  const int64_t dim = table.ne[0];
  const uint32_t block = dtype_info(table.type).block_elems;
  if (dim <= 0 || table.ne[1] <= 0 || table.ne[2] != 1 || table.ne[3] != 1) {
    fail("cuda embed '{}': expected a 2-D table {{D, vocab}}, got {{{}, {}, {}, {}}}", name_of(table), table.ne[0],
         table.ne[1], table.ne[2], table.ne[3]);
  }
  if (dim % block != 0 || (!is_float_type(table.type) && dim % 32 != 0)) {
    fail("cuda embed '{}': row of {} is not a multiple of the {}-element blocks of {}", name_of(table), dim, block,
         dtype_name(table.type));
  }
  if (n < 0) fail("cuda embed '{}': negative token count {}", name_of(table), n);
  if (n == 0) return;
  if (tokens == nullptr || out == nullptr) fail("cuda embed '{}': null pointer argument", name_of(table));
  if (n > std::numeric_limits<int>::max()) fail("cuda embed '{}': {} tokens is too many", name_of(table), n);
  detail::embed_rows(stream, table.type, table.data, table.row_bytes(), table.ne[1], dim, tokens, n, out);
}

}  // namespace tandem::cuda
