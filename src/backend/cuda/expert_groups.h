// How a prompt's routed-expert work is laid out on the GPU (host-only bookkeeping; the
// CUDA backend's moe_experts runs it).
//
// A micro-batch of T tokens makes T * k (token, expert) slots. Grouped by expert, most
// experts of a large MoE (256 in Qwen3.5-35B-A3B) get only a few tokens each (k T / E: 16 at
// T = 512), so one GEMM per expert is hundreds of small launches per layer, each paying
// launch overhead and an f16 copy of the expert's weights. Instead the slots are laid out
// in rows, expert by expert, each expert's rows padded to a multiple of kChunkTokens; a
// chunk (kChunkTokens rows of one expert) is one slot of the integer mat-vec, so ONE launch
// per weight matrix covers every such expert, reading each expert's weights once per chunk
// of its tokens (0.56 bytes per weight for Q4_K) instead of 0.56 + 4 through an f16 tile.
// Experts with at least gemm_min_tokens tokens (where the f16 tile's extra 4 bytes per
// weight cost less than their chunk reads) keep a GEMM each; their rows follow the chunks.
//
// Rows: [0, chunk_rows) the chunked experts, ascending, each padded to kChunkTokens;
// [chunk_rows, rows) the GEMM experts, ascending, unpadded. Padding rows gather nothing
// (token -1: zeros) and no slot reads them back.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tandem::cuda {

// Rows per chunk: the mat-vec's token columns per weight read (matmul.h kMatvecMaxTokens).
inline constexpr int64_t kChunkTokens = 8;
// An expert with this many tokens runs as a GEMM: 8 chunks read its Q4_K weights 8 x 0.56
// bytes per weight, about what the GEMM's f16 tile costs (written and read: 4 bytes, plus
// the 0.56 read). From byte counts, not yet measured on a GPU.
inline constexpr int64_t kExpertGemmMinTokens = 64;

struct ExpertGroups {
  struct Gemm {
    int32_t expert;
    int64_t first_row, rows;
  };
  std::vector<int32_t> row_token;     // [rows]: the token a row takes its input from, -1 for padding
  std::vector<int32_t> slot_row;      // [T * k]: the row holding slot t * k + j's output
  std::vector<int32_t> chunk_expert;  // [chunk_rows / kChunkTokens]: the expert of each chunk
  std::vector<Gemm> gemms;            // experts run as one GEMM each
  int64_t chunk_rows = 0, rows = 0;
  std::vector<int64_t> counts, next_row;  // [n_expert]: working storage, kept to reuse
};

// Rows a micro-batch of n_slots slots can need at most: every slot, plus the padding of
// each expert's last chunk.
int64_t max_expert_rows(int64_t n_slots, int64_t n_expert);

// Lays out the slots (ids: [T][k] expert ids, token-major) over n_expert experts. Fails
// naming the id when one is outside [0, n_expert). Reuses out's storage.
void group_slots_by_expert(std::span<const int32_t> ids, int64_t k, int64_t n_expert, int64_t gemm_min_tokens,
                           ExpertGroups& out);

}  // namespace tandem::cuda
