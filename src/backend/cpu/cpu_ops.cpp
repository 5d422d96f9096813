#include "backend/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <sys/mman.h>


#include "backend/cpu/dot_bf16_dp.h"
#include "backend/cpu/dot_f32.h"
#include "backend/cpu/group_width.h"
#include "backend/cpu/vec_math.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "quant/dequantize.h"

namespace tandem::cpu {

namespace {
constexpr size_t kDTypeIds = 64;  // ggml type ids are below this
}

OpContext::OpContext(int n_threads, int64_t max_row) : OpContext(std::make_shared<ThreadPool>(n_threads), max_row) {}

OpContext::OpContext(std::shared_ptr<ThreadPool> pool, int64_t max_row)
    : pool_(std::move(pool)), max_row_(max_row), scratch_(static_cast<size_t>(pool_->size())),
      attention_(static_cast<size_t>(pool_->size())), kernels_(kDTypeIds) {
  for (auto& s : scratch_) s.resize(static_cast<size_t>(max_row));
  for (size_t id = 0; id < kDTypeIds; ++id) kernels_[id] = quant_dot_kernel(static_cast<DType>(id));
  x16_override();  // a bad TANDEM_X16 fails here, on every CPU
}

uint8_t* OpContext::activation_buffer(size_t bytes) {
  if (activations_.size() < bytes) activations_.resize(bytes);
  return activations_.data();
}

void OpContext::reserve_context(int64_t n_ctx, int64_t group) {
  if (n_ctx <= max_ctx_ && group <= max_group_) return;
  max_ctx_ = std::max(max_ctx_, n_ctx);
  max_group_ = std::max(max_group_, group);
  const auto size = static_cast<size_t>(2 * kAttentionTileKeys * max_row_ + max_group_ * kAttentionTileKeys +
                                        2 * kAttentionTileTokens * max_group_ + max_row_);
  for (auto& a : attention_) a.assign(size, 0.0f);
}

namespace {
// TANDEM_CPU_LAYOUT=rows keeps every weight in the file's row layout (for A/B measurements).
bool interleaving_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("TANDEM_CPU_LAYOUT");
    if (v == nullptr || std::string_view(v) == "x8") return true;
    if (std::string_view(v) == "rows") return false;
    fail("TANDEM_CPU_LAYOUT='{}': expected rows or x8", v);
  }();
  return on;
}
}  // namespace

const Tensor& OpContext::prepared(const Tensor& w) {
  if (w.interleaved || w.device != Device::Cpu || w.n_dims < 2 || w.ne[1] % kInterleave != 0) return w;
  if (const auto it = repacked_.find(w.data); it != repacked_.end()) {
    const Tensor& t = it->second.tensor;
    if (t.type == w.type && t.ne == w.ne) return t;
    fail("weight '{}' ({}) is at the address of '{}' ({}), repacked earlier: the model must outlive the context", w.name,
         dtype_name(w.type), t.name, dtype_name(t.type));
  }
  const QuantDotKernel& kernel = this->kernel(w.type);
  if (!kernel.interleavable() || !interleaving_enabled()) return w;
  const size_t row_bytes = w.row_bytes(), bytes = row_bytes * static_cast<size_t>(w.rows());
  if (kernel.dot_x16 && !float_activations_) {
    width_types_[static_cast<size_t>(w.type)] = true;
    // Once this context's weights outgrow the L3, a pass reads them from memory: every type
    // seen so far takes its streamed choice (the measurement's buffer is freed before the
    // repack below allocates).
    const bool was_streaming = weights_stream(interleaved_bytes_);
    if (!was_streaming && weights_stream(interleaved_bytes_ + bytes)) {
      for (size_t id = 0; id < kDTypeIds; ++id) {
        if (width_types_[id]) settle_widths(kernels_[id], true);
      }
    } else {
      settle_widths(kernels_[static_cast<size_t>(w.type)], was_streaming);
    }
  }
  Repacked r{w, allocate_weights(bytes)};
  r.tensor.interleaved = true;
  r.tensor.data = static_cast<const uint8_t*>(r.bytes.as());
  auto* dst = static_cast<uint8_t*>(r.bytes.as());
  // Each chunk's file pages go as soon as it is copied: the peak stays near the file's size
  // even for the largest tensors (the head, an expert stack).
  const size_t group_bytes = row_bytes * kInterleave;
  pool_->parallel_for(w.rows() / kInterleave, [&](int, int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const size_t at = static_cast<size_t>(g) * group_bytes;
      kernel.repack_x8(w.data + at, row_bytes, w.ne[0], dst + at);
    }
    MappedFile::release_pages(w.data + static_cast<size_t>(begin) * group_bytes, static_cast<size_t>(end - begin) * group_bytes);
  });
  MappedFile::release_pages(w.data, bytes);  // the pages chunks shared
  interleaved_bytes_ += bytes;
  return repacked_.emplace(w.data, std::move(r)).first->second.tensor;
}

void OpContext::settle_widths(QuantDotKernel& k, bool streaming) {
  if (!k.dot_x16) return;  // settled with streamed weights: neither choice uses it
  k.x16_min_cols = x16_min_cols(k);
  // While the weights fit in the L3, a call of few tokens reads them from cache too.
  k.x16_min_cols_streamed = streaming ? x16_min_cols_streamed(k, pool_.get()) : k.x16_min_cols;
  if (streaming && k.x16_min_cols == 0 && k.x16_min_cols_streamed == 0) k.dot_x16 = nullptr;
}

const OpContext::Repacked* OpContext::stored_copy(const Tensor& w, int64_t row0, int64_t n_rows, const char* op) const {
  if (row0 < 0 || n_rows < 0 || row0 + n_rows > w.rows()) {
    fail("{} '{}': rows [{}, {}) outside its {}", op, w.name, row0, row0 + n_rows, w.rows());
  }
  if (w.interleaved) fail("{} '{}': give the weight as loaded, not its interleaved copy", op, w.name);
  const auto it = repacked_.find(w.data);
  if (it == repacked_.end()) return nullptr;
  if (row0 % kInterleave != 0 || n_rows % kInterleave != 0) {
    fail("{} '{}': rows [{}, {}) split an interleaved group of {}", op, w.name, row0, row0 + n_rows, kInterleave);
  }
  return &it->second;
}

void OpContext::parallel_copy(uint8_t* dst, const uint8_t* src, size_t bytes) {
  constexpr size_t kJob = size_t{1} << 20;  // 1 MiB a job
  pool_->parallel_for(static_cast<int64_t>((bytes + kJob - 1) / kJob), [&](int, int64_t begin, int64_t end) {
    const size_t b0 = static_cast<size_t>(begin) * kJob, b1 = std::min(bytes, static_cast<size_t>(end) * kJob);
    std::memcpy(dst + b0, src + b0, b1 - b0);
  });
}

void OpContext::read_rows(const Tensor& w, int64_t row0, int64_t n_rows, uint8_t* dst) {
  const Repacked* copy = stored_copy(w, row0, n_rows, "read_rows");
  const size_t row_bytes = w.row_bytes();
  if (copy == nullptr) {  // plain bytes (mapped file pages)
    parallel_copy(dst, w.row(row0), static_cast<size_t>(n_rows) * row_bytes);
    return;
  }
  const QuantDotKernel& kernel = kernels_[static_cast<size_t>(copy->tensor.type)];
  const size_t group_bytes = row_bytes * kInterleave;
  const int64_t g0 = row0 / kInterleave;
  pool_->parallel_for(n_rows / kInterleave, [&](int, int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      kernel.unpack_x8(copy->tensor.data + static_cast<size_t>(g0 + g) * group_bytes, w.ne[0], dst + g * group_bytes,
                       row_bytes);
    }
  });
}

UnpackFn OpContext::read_stored_rows(const Tensor& w, int64_t row0, int64_t n_rows, uint8_t* dst) {
  const Repacked* copy = stored_copy(w, row0, n_rows, "read_stored_rows");
  const size_t row_bytes = w.row_bytes();
  // A group takes its 8 rows' bytes (interleaved.h), so rows [row0, row0 + n) are the
  // same byte range in both layouts.
  const uint8_t* src = copy == nullptr ? w.row(row0) : copy->tensor.data + static_cast<size_t>(row0) * row_bytes;
  parallel_copy(dst, src, static_cast<size_t>(n_rows) * row_bytes);
  return copy == nullptr ? nullptr : kernels_[static_cast<size_t>(copy->tensor.type)].unpack_x8;
}

UnpackFn OpContext::stored_rows_unpack(const Tensor& w) const {
  const auto it = repacked_.find(w.data);
  return it == repacked_.end() ? nullptr : kernels_[static_cast<size_t>(it->second.tensor.type)].unpack_x8;
}

// Repacked weights: fresh pages, as huge pages where the kernel allows (a whole model passes
// through here at load: 4 KiB faults and their zeroing cost more than the copy itself, and
// decode's TLB misses drop too).
Memory OpContext::allocate_weights(size_t bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  void* p = nullptr;
  if (bytes == 0) return {};
  if (::posix_memalign(&p, kHugePage, bytes) != 0) fail("cannot allocate {} bytes of host memory for repacked weights", bytes);
  ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: fine if refused
  return Memory(p, bytes, std::free);
}

AttentionScratch OpContext::attention_scratch(int thread) {
  float* base = attention_[static_cast<size_t>(thread)].data();
  AttentionScratch s{};
  s.keys_t = base;
  s.values = s.keys_t + kAttentionTileKeys * max_row_;
  s.scores = s.values + kAttentionTileKeys * max_row_;
  s.max = s.scores + max_group_ * kAttentionTileKeys;
  s.sum = s.max + kAttentionTileTokens * max_group_;
  s.row = s.sum + kAttentionTileTokens * max_group_;
  return s;
}


namespace {

// Rows of W handled as one tile (about 16 KiB of weights): the tile stays in L1 while
// the tokens' activations go past it eight at a time (from L2: matmul_token_chunk), so
// each weight byte comes from memory once per token chunk and each unpacked block serves
// eight tokens.
constexpr int64_t kRowTileBytes = 16 * 1024, kMaxRowTile = 16;
constexpr int kColumns = 8;

// Rows o0..o1 of one weight for n_tokens activation rows: per token chunk, per row tile,
// 8 tokens at a time. An interleaved weight goes 8 rows (one group) per kernel call; o0 is
// then a multiple of 8 (callers split rows on kMaxRowTile boundaries). The chunks are
// multiples of 8 tokens, so every call sees the columns it would without them.
void dot_row_tiles(const QuantDotKernel& kernel, const Tensor& w, const uint8_t* act, size_t act_row,
                   int64_t n_tokens, float* y, int64_t o0, int64_t o1) {
  const int64_t n_in = w.ne[0], n_out = w.rows();
  const size_t row_bytes = w.row_bytes();  // once: the type lookup is not free per row
  const int64_t chunk = matmul_token_chunk(act_row), row_tile = matmul_row_tile(kernel, row_bytes, w.interleaved);
  // Up to kColumns tokens, one call per tile: each weight byte is read once (streamed);
  // more, and the tile serves every group of kColumns tokens from cache.
  const int x16_from = n_tokens <= kColumns ? kernel.x16_min_cols_streamed : kernel.x16_min_cols;
  for (int64_t c0 = 0; c0 < n_tokens; c0 += chunk) {
    const int64_t c1 = std::min(n_tokens, c0 + chunk);
    if (w.interleaved) {
      for (int64_t r0 = o0; r0 < o1; r0 += row_tile) {
        const int64_t r1 = std::min(o1, r0 + row_tile);
        for (int64_t t0 = c0; t0 < c1; t0 += kColumns) {
          const int cols = static_cast<int>(std::min<int64_t>(kColumns, c1 - t0));
          const uint8_t* a = act + static_cast<size_t>(t0) * act_row;
          for (int64_t g = r0; g < r1;) {
            const bool two = kernel.dot_x16 && x16_from > 0 && cols >= x16_from && g + 2 * kInterleave <= r1;
            (two ? kernel.dot_x16 : kernel.dot_x8)(n_in, w.data + static_cast<size_t>(g) * row_bytes, a, act_row, cols,
                                                   y + t0 * n_out + g, n_out);
            g += two ? 2 * kInterleave : kInterleave;
          }
        }
      }
      continue;
    }
    for (int64_t r0 = o0; r0 < o1; r0 += row_tile) {
      const int64_t r1 = std::min(o1, r0 + row_tile);
      for (int64_t t0 = c0; t0 < c1; t0 += kColumns) {
        const int cols = static_cast<int>(std::min<int64_t>(kColumns, c1 - t0));
        const uint8_t* a = act + static_cast<size_t>(t0) * act_row;
        const uint8_t* wrow = w.data + static_cast<size_t>(r0) * row_bytes;
        for (int64_t o = r0; o < r1; ++o, wrow += row_bytes) kernel.dot(n_in, wrow, a, act_row, cols, y + t0 * n_out + o, n_out);
      }
    }
  }
}

// y[t][o] += bias[o] for outputs o0..o1 of every token.
void add_bias_rows(const float* bias, int64_t n_tokens, int64_t n_out, float* y, int64_t o0, int64_t o1) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t o = o0; o < o1; ++o) y[t * n_out + o] += bias[o];
  }
}

}  // namespace

int64_t matmul_row_tile(const QuantDotKernel& kernel, size_t row_bytes, bool interleaved) {
  const int64_t fit = kRowTileBytes / std::max<int64_t>(1, static_cast<int64_t>(row_bytes));
  if (!interleaved) return std::clamp<int64_t>(fit, 1, kMaxRowTile);
  const bool x16 = kernel.dot_x16 && (kernel.x16_min_cols > 0 || kernel.x16_min_cols_streamed > 0);
  const int64_t min_tile = x16 ? 2 * kInterleave : kInterleave;
  return std::clamp<int64_t>(fit, min_tile, kMaxRowTile) / kInterleave * kInterleave;
}

int64_t matmul_token_chunk(size_t act_row) {
  // Half the L2 for the activations: the rest holds the row tile, the outputs and what the
  // hardware prefetcher brings in. 512 KiB assumed where cpuid does not say.
  const int64_t l2 = cpu_caches().l2 > 0 ? cpu_caches().l2 : int64_t{512} << 10;
  const int64_t tokens = l2 / 2 / std::max<int64_t>(1, static_cast<int64_t>(act_row));
  return std::max<int64_t>(kColumns, tokens / kColumns * kColumns);
}

DType grouped_activation_type(const OpContext& ctx, DType weight) {
  const QuantDotKernel& k = ctx.kernel(weight);
  return k ? k.activation : DType::F32;
}

void quantize_activations(OpContext& ctx, DType weight, const float* x, int64_t n_rows, int64_t n, uint8_t* dst) {
  const QuantDotKernel& kernel = ctx.kernel(weight);
  if (!kernel) fail("quantize_activations: {} weights take the float path", dtype_name(weight));
  const size_t row = activation_row_bytes(kernel, n);
  if (n_rows == 1) {
    kernel.quantize(x, dst, n);
    return;
  }
  ctx.pool().parallel_for(n_rows, [&](int, int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) kernel.quantize(x + t * n, dst + static_cast<size_t>(t) * row, n);
  });
}

void matmul_grouped(OpContext& ctx, std::span<const GroupedMatmul> group) {
  if (group.empty()) return;
  // Row offsets of each matmul in the concatenated row space.
  int64_t* first = ctx.group_offsets(group.size() + 1);
  first[0] = 0;
  const DType act_type = grouped_activation_type(ctx, group[0].w.type);
  for (size_t i = 0; i < group.size(); ++i) {
    if (grouped_activation_type(ctx, group[i].w.type) != act_type || act_type == DType::F32) {
      fail("matmul_grouped: '{}' ({}) does not share the group's activation type", group[i].w.name,
           dtype_name(group[i].w.type));
    }
    // Each matmul's span is padded to whole row tiles, so the pool's cuts (multiples of
    // kMaxRowTile) fall on interleaved groups' boundaries.
    first[i + 1] = first[i] + (group[i].w.rows() + kMaxRowTile - 1) / kMaxRowTile * kMaxRowTile;
  }
  ctx.pool().parallel_for(
      first[group.size()],
      [&](int, int64_t begin, int64_t end) {
        size_t i = static_cast<size_t>(std::upper_bound(first, first + group.size() + 1, begin) - first) - 1;
        for (int64_t at = begin; at < end; ++i) {
          const GroupedMatmul& g = group[i];
          const int64_t o0 = at - first[i], o1 = std::min(end, first[i + 1]) - first[i];
          const int64_t rows_end = std::min(o1, g.w.rows());  // past it: the span's padding
          if (o0 < rows_end) {
            const QuantDotKernel& kernel = ctx.kernel(g.w.type);
            dot_row_tiles(kernel, g.w, g.act, activation_row_bytes(kernel, g.w.ne[0]), g.n_tokens, g.y, o0, rows_end);
            if (g.bias) add_bias_rows(g.bias, g.n_tokens, g.w.rows(), g.y, o0, rows_end);
          }
          at = first[i] + o1;
        }
      },
      kMaxRowTile);
}

QuantDotKernel kernel_for_pass(const QuantDotKernel& kernel, int64_t batch_tokens) {
  QuantDotKernel k = kernel;
  if (batch_tokens > kColumns) k.x16_min_cols_streamed = k.x16_min_cols;
  return k;
}

void matmul_serial(const QuantDotKernel& kernel, const GroupedMatmul& m) {
  dot_row_tiles(kernel, m.w, m.act, activation_row_bytes(kernel, m.w.ne[0]), m.n_tokens, m.y, 0, m.w.rows());
  if (m.bias) add_bias_rows(m.bias, m.n_tokens, m.w.rows(), m.y, 0, m.w.rows());
}

namespace {

void matmul_quantized(OpContext& ctx, const QuantDotKernel& kernel, const Tensor& w, const float* x,
                      int64_t n_tokens, float* y, const float* bias) {
  const int64_t n_in = w.ne[0], n_out = w.rows();
  const size_t act_row = activation_row_bytes(kernel, n_in);
  uint8_t* act = ctx.activation_buffer(act_row * static_cast<size_t>(n_tokens));
  quantize_activations(ctx, w.type, x, n_tokens, n_in, act);
  ctx.pool().parallel_for(
      n_out,
      [&](int, int64_t begin, int64_t end) {
        dot_row_tiles(kernel, w, act, act_row, n_tokens, y, begin, end);
        if (bias) add_bias_rows(bias, n_tokens, n_out, y, begin, end);
      },
      kMaxRowTile);
}

}  // namespace

void matmul(OpContext& ctx, const Tensor& w, const float* x, int64_t n_tokens, float* y,
            const float* bias) {
  const int64_t n_in = w.ne[0], n_out = w.rows();
  const QuantDotKernel& kernel = ctx.kernel(w.type);
  if (kernel) {
    matmul_quantized(ctx, kernel, w, x, n_tokens, y, bias);
    return;
  }
  if (w.interleaved) fail("matmul '{}': interleaved rows need the integer kernels (float activations are on)", w.name);
  // Rows of tokens at a time, so that the activations a thread sweeps for each weight row
  // stay in its L2 (a 512-token prompt of 2048 features is 4 MiB).
  constexpr int64_t kTokenTile = 32;
  const auto over_rows = [&](auto&& dot_row) {
    ctx.pool().parallel_for(
        n_out,
        [&](int thread, int64_t begin, int64_t end) {
          for (int64_t t = 0; t < n_tokens; t += kTokenTile) {
            const int64_t tile = std::min(kTokenTile, n_tokens - t);
            for (int64_t o = begin; o < end; ++o) dot_row(thread, o, t, tile, bias ? bias[o] : 0.0f);
          }
        },
        16);
  };
  switch (w.type) {
    case DType::F32: {
      static const DotRowsFn dot_rows = best_dot_rows();
      over_rows([&](int, int64_t o, int64_t t, int64_t tile, float b) {
        dot_rows(reinterpret_cast<const float*>(w.row(o)), x + t * n_in, n_in, tile, n_in, y + t * n_out + o, n_out, b);
      });
      return;
    }
    case DType::BF16:
      if (static const Bf16DotRowsFn dp = native_dot_rows_bf16_dp(); dp && !ctx.float_activations()) {
        // AVX512-BF16: activations rounded to bf16 once, then two products per lane per instruction.
        auto* xb = reinterpret_cast<uint16_t*>(ctx.activation_buffer(static_cast<size_t>(n_tokens * n_in) * 2));
        round_to_bf16(x, n_tokens, n_in, xb);
        over_rows([&](int, int64_t o, int64_t t, int64_t tile, float b) {
          dp(reinterpret_cast<const uint16_t*>(w.row(o)), xb + t * n_in, n_in, tile, n_in, y + t * n_out + o, n_out, b);
        });
        return;
      }
      [[fallthrough]];
    case DType::F16: {
      static const HalfDotRowsFn f16_rows = best_dot_rows_half(DType::F16);
      static const HalfDotRowsFn bf16_rows = best_dot_rows_half(DType::BF16);
      const HalfDotRowsFn dot_rows = w.type == DType::F16 ? f16_rows : bf16_rows;
      over_rows([&](int, int64_t o, int64_t t, int64_t tile, float b) {
        dot_rows(reinterpret_cast<const uint16_t*>(w.row(o)), x + t * n_in, n_in, tile, n_in, y + t * n_out + o, n_out,
                 b);
      });
      return;
    }
    default:
      if (n_in > ctx.max_row()) fail("matmul '{}': row of {} exceeds scratch {}", w.name, n_in, ctx.max_row());
      // Other types with float activations (tests): each row decoded to f32 scratch.
      static const DotRowsFn dot_rows = best_dot_rows();
      // (Decoded again per token tile: a test path, kept simple.)
      over_rows([&](int thread, int64_t o, int64_t t, int64_t tile, float b) {
        float* row = ctx.row_scratch(thread);
        quant::dequantize_row(w.type, w.row(o), row, n_in);
        dot_rows(row, x + t * n_in, n_in, tile, n_in, y + t * n_out + o, n_out, b);
      });
  }
}

void matmul_shared_input(OpContext& ctx, const float* x, int64_t n_tokens, std::span<const SharedInputMatmul> outs) {
  constexpr size_t kMax = 8;
  if (outs.size() > kMax) fail("matmul_shared_input: {} matmuls, at most {}", outs.size(), kMax);
  bool done[kMax] = {};
  for (size_t i = 0; i < outs.size(); ++i) {
    if (done[i]) continue;
    const DType act = grouped_activation_type(ctx, outs[i].w->type);
    if (act == DType::F32) {  // float path
      matmul(ctx, *outs[i].w, x, n_tokens, outs[i].y, outs[i].bias);
      done[i] = true;
      continue;
    }
    // Every remaining matmul wanting this activation type joins one grouped pass.
    const int64_t n_in = outs[i].w->ne[0];
    const QuantDotKernel& kernel = ctx.kernel(outs[i].w->type);
    uint8_t* buffer = ctx.activation_buffer(activation_row_bytes(kernel, n_in) * static_cast<size_t>(n_tokens));
    quantize_activations(ctx, outs[i].w->type, x, n_tokens, n_in, buffer);
    GroupedMatmul group[kMax];
    size_t n = 0;
    for (size_t j = i; j < outs.size(); ++j) {
      if (done[j] || grouped_activation_type(ctx, outs[j].w->type) != act) continue;
      if (outs[j].w->ne[0] != n_in) fail("matmul_shared_input: '{}' does not take the shared input", outs[j].w->name);
      group[n++] = GroupedMatmul{*outs[j].w, buffer, n_tokens, outs[j].y, outs[j].bias};
      done[j] = true;
    }
    matmul_grouped(ctx, std::span<const GroupedMatmul>(group, n));
  }
}

void embed(const Tensor& table, std::span<const int32_t> tokens, float* out) {
  const int64_t d = table.ne[0], vocab = table.rows();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t >= vocab) fail("token id {} is outside the vocabulary of {} tokens", t, vocab);
    quant::dequantize_row(table.type, table.row(t), out + static_cast<int64_t>(i) * d, d);
  }
}

void rms_norm(const float* x, const float* w, int64_t n_rows, int64_t n, float eps, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* o = out + r * n;
    double sum = 0;  // f64 accumulation: the mean of squares is sensitive in long rows
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
    for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * scale * w[i];
  }
}

// The angles as llama.cpp's rope computes them (ggml's rope cache): f32, theta_0 = p and
// theta_{i+1} = theta_i * base^(-2/n_rot), then cosf/sinf. Exact angles (f64) were tried
// and give different greedy text on real GGUF models wherever two tokens are close (on
// Qwen2.5-Coder-0.5B 2 of 5 reference continuations parted instead of 1): the models run
// with f32 angles in both HF transformers (p * inv_freq in f32) and llama.cpp, so an f32
// angle is what they expect, and this is the order llama.cpp users get.
void rope_neox(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t n_rot,
               std::span<const int32_t> positions, float freq_base) {
  const int64_t half = n_rot / 2;
  const float theta_scale = rope_theta_scale(freq_base, n_rot);
  for (int64_t t = 0; t < n_tokens; ++t) {
    float theta = static_cast<float>(positions[static_cast<size_t>(t)]);
    for (int64_t i = 0; i < half; ++i, theta *= theta_scale) {
      const float c = std::cos(theta), s = std::sin(theta);
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + (t * n_heads + h) * head_dim;
        const float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = a * s + b * c;
      }
    }
  }
}

namespace {

void swiglu_portable(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

__attribute__((target("avx2,fma"))) void swiglu_avx2(const float* gate, const float* up, int64_t n, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp_avx2(_mm256_xor_ps(g, sign))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  swiglu_portable(gate + i, up + i, n - i, out + i);
}

}  // namespace

void swiglu(const float* gate, const float* up, int64_t n, float* out) {
  static const auto impl = cpu_features().avx2 && cpu_features().fma ? swiglu_avx2 : swiglu_portable;
  impl(gate, up, n, out);
}

void add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void softmax(float* x, int64_t n) {
  const float m = *std::max_element(x, x + n);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  for (int64_t i = 0; i < n; ++i) x[i] /= sum;
}

void route_top_k(float* p, int64_t E, int64_t k, bool renormalize, int32_t* chosen, float* weight) {
  softmax(p, E);
  float sum = 0;
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < E; ++e) {
      if (std::find(chosen, chosen + j, static_cast<int32_t>(e)) != chosen + j) continue;
      if (best < 0 || p[e] > p[best]) best = e;
    }
    chosen[j] = static_cast<int32_t>(best);
    weight[j] = p[best];
    sum += p[best];
  }
  if (!renormalize) return;
  sum = std::max(sum, 6.1035e-5f);
  for (int64_t j = 0; j < k; ++j) weight[j] /= sum;
}

}  // namespace tandem::cpu
