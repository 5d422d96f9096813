// Weight x activation products and embedding rows on the GPU, for every GGUF weight type
// the Qwen family's files hold: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
// IQ4_NL, IQ4_XS, and F32 / F16 / BF16. Same semantics as tandem::cpu::matmul / embed.
//
// Paths (matmul.cu has the kernels and the reasons):
//   quantized, T <= kMatvecMaxTokens: activations quantized on the device to 8-bit blocks,
//     integer mat-vec (__dp4a), every token column per weight read;
//   quantized, kMatvecMaxTokens < T <= tile_gemm_max_tokens() (on compute capability 8.0+):
//     the tile GEMM, weights decoded and x rounded to f16 in shared memory, tensor cores;
//   quantized, larger T: weight row tiles dequantized to f16 in scratch, x converted to
//     f16, cublasGemmEx f16 x f16 -> f32 (the same products as the tile GEMM);
//   F32 / F16 / BF16: a float mat-vec for T <= kMatvecMaxTokens, else cuBLAS directly on
//     the weights (x converted to the weight's 16-bit type).
// Everything runs on the context's compute stream and never allocates or synchronises:
// the caller hands in scratch sized once with matmul_scratch_bytes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_context.h"
#include "core/tensor.h"

namespace tandem::cuda {

// Up to this many tokens a matmul is a mat-vec over 8-bit activations; beyond, a GEMM.
inline constexpr int64_t kMatvecMaxTokens = 8;
// Quantized prompt matmuls up to this many tokens take the tile GEMM instead of
// dequantize + cuBLAS. An estimate, not a measurement: the tile GEMM reads each weight once
// per 64 tokens at ~0.6 byte and writes nothing, cuBLAS adds ~4 bytes of f16 tile traffic
// per weight but multiplies faster; on a bandwidth-poor card the tile GEMM may win at any
// T, on an H100 cuBLAS should from a few hundred tokens. CudaMatmul.SpeedReport times both.
inline constexpr int64_t kTileGemmMaxTokens = 128;
// The threshold in force (kTileGemmMaxTokens unless set, for tests and measurements: 0 sends
// every prompt matmul to cuBLAS). Process-wide.
int64_t tile_gemm_max_tokens();
void set_tile_gemm_max_tokens(int64_t tokens);

// The f16 weight tile of the GEMM path that matmul_scratch_bytes plans for (rows of one
// matrix, never the whole model; a larger scratch gives taller tiles, fewer GEMMs).
inline constexpr size_t kWeightTileBytes = size_t{32} << 20;

// Device memory a matmul may use for its intermediate values (quantized or f16
// activations, the dequantized weight tile). 256-byte aligned; not kept across calls.
struct MatmulScratch {
  void* data = nullptr;
  size_t bytes = 0;
};

// True for the weight types matmul, matmul_experts and embed accept.
bool cuda_supports_weight(DType type);

// Scratch enough for any supported weight of shape {n_in, n_out} with up to max_tokens
// tokens: max over the two paths of
//   mat-vec: min(T, 8) x n_in int8 codes + min(T, 8) x n_in/32 x 8 bytes of scales;
//   GEMM:    T x n_in f16 activations + min(n_out, rows in kWeightTileBytes) x n_in f16.
// A model sizes one scratch with the largest n_in, n_out and batch of its matmuls.
size_t matmul_scratch_bytes(int64_t n_in, int64_t n_out, int64_t max_tokens);

// y[t][o] = sum_i W[o][i] * x[t][i] (+ bias[o]) for t < n_tokens.
// w: device tensor {n_in, n_out} (GGUF blocks, data 16-byte aligned); x: device
// [n_tokens][n_in] f32; y: device [n_tokens][n_out] f32; bias: device [n_out] or null.
// Fails (tandem::Error naming the weight) on an unsupported type, a shape or device
// mismatch, or scratch too small for n_tokens.
void matmul(const CudaContext& ctx, const Tensor& w, const float* x, int64_t n_tokens, float* y, const float* bias,
            MatmulScratch scratch);

// Scratch for matmul_experts with n_x_rows activation rows of n_in.
size_t matmul_experts_scratch_bytes(int64_t n_in, int64_t n_x_rows);

// Expert slots: y[s] = W[ids[s]] x[s / (n_slots / n_x_rows)] for s < n_slots, a mat-vec per
// slot. w: device {n_in, n_out, n_expert}; ids: device int32 [n_slots] (read on the
// device: no host sync); x: device [n_x_rows][n_in], n_x_rows dividing n_slots (1: every
// slot takes the one token; T with slots token-major [T][k]: slot t*k+j takes token t);
// y: device [n_slots][n_out]. An id outside [0, n_expert) gives that slot a row of NaN
// (never an out-of-bounds read). Meant for decode (a few slots); a prompt's MoE should
// group tokens by expert and call matmul on w.matrix(e).
void matmul_experts(const CudaContext& ctx, const Tensor& w, const float* x, int64_t n_x_rows, const int32_t* ids,
                    int64_t n_slots, float* y, MatmulScratch scratch);

// Expert chunks (prompt MoE, expert_groups.h): chunk c applies expert ids[c] to the
// kChunkTokens activation rows [8c, 8c + 8) and writes y rows [8c, 8c + 8), one mat-vec
// launch for all chunks (each expert's weights read once per chunk). w: device {n_in,
// n_out, n} holding experts first_expert .. first_expert + n - 1 (all of them, or a slab
// being streamed); ids: device int32 [n_chunks]; x: device [8 n_chunks][n_in]; y: device
// [8 n_chunks][n_out]. An id outside w gives its chunk rows of NaN, as matmul_experts.
void matmul_expert_chunks(const CudaContext& ctx, const Tensor& w, const float* x, int64_t n_chunks,
                          const int32_t* ids, float* y, MatmulScratch scratch, int32_t first_expert = 0);

// Rows of an embedding table {D, vocab} for device token ids -> out [n][D] (device),
// decoded exactly as tandem::cpu::embed does (bit-identical). An id outside the vocabulary
// gives a row of NaN (the ids live on the device; checking them here would need a sync).
void embed(cudaStream_t stream, const Tensor& table, const int32_t* tokens, int64_t n, float* out);

// Kernel launchers of matmul.cu, called by matmul_host.cpp after validation. Not an API.
namespace detail {

// One mat-vec launch: `slots` groups of T tokens. Slot s reads weight matrix ids[s] (or
// the only one when ids is null) and activation rows s * x_step / x_share + t; it writes
// y rows s * T + t.
struct MatvecArgs {
  DType type = DType::F32;
  const uint8_t* w = nullptr;
  uint64_t row_bytes = 0;
  uint64_t matrix_bytes = 0;
  int64_t n_in = 0, n_out = 0;
  const int32_t* ids = nullptr;
  int32_t id_base = 0;        // w holds matrices id_base .. id_base + n_matrices - 1
  int64_t n_matrices = 1;
  int64_t slots = 1, x_share = 1, tokens = 1;
  int64_t x_step = 1;          // slot s reads activation rows from s * x_step / x_share
  const float* x = nullptr;   // float path: [rows][n_in]
  const int8_t* aq = nullptr;  // integer path: [rows][n_in] codes
  const float* ad = nullptr;   // integer path: [rows][n_in / 32][2] (d, d * sum)
  float* y = nullptr;
  const float* bias = nullptr;
};

void quantize_activations(cudaStream_t stream, const float* x, int64_t rows, int64_t n_in, int8_t* aq, float* ad);
void matvec(cudaStream_t stream, const MatvecArgs& args);
// rows [row0, row0 + n_rows) of a quantized weight -> f16 [n_rows][n_in].
void dequantize_rows_f16(cudaStream_t stream, DType type, const uint8_t* w, uint64_t row_bytes, int64_t row0,
                         int64_t n_rows, int64_t n_in, void* out);
// y [n_tokens][n_out] = W x on the tensor cores (matmul.cu's tile GEMM); x 16-byte aligned.
void tile_gemm(cudaStream_t stream, DType type, const uint8_t* w, uint64_t row_bytes, int64_t n_in, int64_t n_out,
               const float* x, int64_t n_tokens, float* y);
// x (f32) -> f16 (half = true) or bf16.
void convert_activations(cudaStream_t stream, const float* x, int64_t n, void* out, bool half);
void add_bias(cudaStream_t stream, float* y, const float* bias, int64_t rows, int64_t n);
void embed_rows(cudaStream_t stream, DType type, const uint8_t* table, uint64_t row_bytes, int64_t vocab, int64_t dim,
                const int32_t* tokens, int64_t n, float* out);

}  // namespace detail
}  // namespace tandem::cuda
