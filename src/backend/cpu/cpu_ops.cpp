#include "backend/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <immintrin.h>

#include "backend/cpu/dot_f32.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "core/error.h"
#include "quant/dequantize.h"

namespace tandem::cpu {

namespace {
constexpr size_t kDTypeIds = 64;  // ggml type ids are below this
}

OpContext::OpContext(int n_threads, int64_t max_row)
    : pool_(n_threads), max_row_(max_row), scratch_(static_cast<size_t>(n_threads)),
      scores_(static_cast<size_t>(n_threads)), kernels_(kDTypeIds) {
  for (auto& s : scratch_) s.resize(static_cast<size_t>(max_row));
  for (size_t id = 0; id < kDTypeIds; ++id) kernels_[id] = quant_dot_kernel(static_cast<DType>(id));
}

uint8_t* OpContext::activation_buffer(size_t bytes) {
  if (activations_.size() < bytes) activations_.resize(bytes);
  return activations_.data();
}

void OpContext::reserve_context(int64_t n_ctx, int64_t group) {
  if (n_ctx <= max_ctx_ && group <= max_group_) return;
  max_ctx_ = std::max(max_ctx_, n_ctx);
  max_group_ = std::max(max_group_, group);
  for (auto& s : scores_) s.resize(static_cast<size_t>(max_ctx_ * max_group_));
}


namespace {

// Rows of W handled as one tile (about 16 KiB of weights): the tile stays in L1 while
// the tokens' activations go past it four at a time (also from L1), so each weight byte
// comes from memory once per matmul and each unpacked block serves four tokens.
constexpr int64_t kRowTileBytes = 16 * 1024, kMaxRowTile = 16;
constexpr int kColumns = 4;

// Rows o0..o1 of one weight for n_tokens activation rows: 4 tokens at a time per row tile.
void dot_row_tiles(const QuantDotKernel& kernel, const Tensor& w, const uint8_t* act, size_t act_row,
                   int64_t n_tokens, float* y, int64_t o0, int64_t o1) {
  const int64_t n_in = w.ne[0], n_out = w.rows();
  const int64_t row_tile = std::clamp<int64_t>(kRowTileBytes / static_cast<int64_t>(w.row_bytes()), 1, kMaxRowTile);
  for (int64_t r0 = o0; r0 < o1; r0 += row_tile) {
    const int64_t r1 = std::min(o1, r0 + row_tile);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kColumns) {
      const int cols = static_cast<int>(std::min<int64_t>(kColumns, n_tokens - t0));
      const uint8_t* a = act + static_cast<size_t>(t0) * act_row;
      for (int64_t o = r0; o < r1; ++o) kernel.dot(n_in, w.row(o), a, act_row, cols, y + t0 * n_out + o, n_out);
    }
  }
}

}  // namespace

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
    first[i + 1] = first[i] + group[i].w.rows();
  }
  ctx.pool().parallel_for(
      first[group.size()],
      [&](int, int64_t begin, int64_t end) {
        size_t i = static_cast<size_t>(std::upper_bound(first, first + group.size() + 1, begin) - first) - 1;
        for (int64_t at = begin; at < end; ++i) {
          const GroupedMatmul& g = group[i];
          const int64_t o0 = at - first[i], o1 = std::min(end, first[i + 1]) - first[i];
          const QuantDotKernel& kernel = ctx.kernel(g.w.type);
          dot_row_tiles(kernel, g.w, g.act, activation_row_bytes(kernel, g.w.ne[0]), g.n_tokens, g.y, o0, o1);
          at = first[i] + o1;
        }
      },
      kMaxRowTile);
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
        if (bias) {
          for (int64_t t = 0; t < n_tokens; ++t) {
            for (int64_t o = begin; o < end; ++o) y[t * n_out + o] += bias[o];
          }
        }
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
  if (n_in > ctx.max_row()) fail("matmul '{}': row of {} exceeds scratch {}", w.name, n_in, ctx.max_row());
  static const DotRowsFn dot_rows = best_dot_rows();
  ctx.pool().parallel_for(
      n_out,
      [&](int thread, int64_t begin, int64_t end) {
        float* row = ctx.row_scratch(thread);
        for (int64_t o = begin; o < end; ++o) {
          const float* wrow = row;
          if (w.type == DType::F32) {
            wrow = reinterpret_cast<const float*>(w.row(o));
          } else {
            quant::dequantize_row(w.type, w.row(o), row, n_in);
          }
          dot_rows(wrow, x, n_in, n_tokens, n_in, y + o, n_out, bias ? bias[o] : 0.0f);
        }
      },
      16);
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

void rope_neox(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t n_rot,
               std::span<const int32_t> positions, float freq_base) {
  const int64_t half = n_rot / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const double p = positions[static_cast<size_t>(t)];
    for (int64_t i = 0; i < half; ++i) {
      const double theta = p * std::pow(static_cast<double>(freq_base), -2.0 * i / n_rot);
      const float c = static_cast<float>(std::cos(theta)), s = static_cast<float>(std::sin(theta));
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

__attribute__((target("avx,f16c"))) void f16_row_to_f32_f16c(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = f16_to_f32(h);
  }
}

// Head g of cache row `pos` as floats: in place for F32, else decoded into tmp.
inline const float* kv_head(const KvView& kv, int64_t pos, int64_t g, int64_t d, float* tmp, bool f16c) {
  const DTypeInfo& info = dtype_info(kv.type);
  const uint8_t* src = kv.data + static_cast<size_t>(pos) * kv.row_bytes +
                       static_cast<size_t>(g * d / info.block_elems) * info.block_bytes;
  if (kv.type == DType::F32) return reinterpret_cast<const float*>(src);
  if (kv.type == DType::F16 && f16c) {
    f16_row_to_f32_f16c(src, tmp, d);
  } else {
    quant::dequantize_row(kv.type, src, tmp, d);
  }
  return tmp;
}

}  // namespace

void attention(OpContext& ctx, const float* q, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
               int64_t head_dim, const KvView& k, const KvView& v, std::span<const int32_t> positions,
               float* out) {
  const int64_t group = n_head / n_head_kv;  // consecutive query heads share a KV head
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // Checked here, not in the workers: an exception must not escape a pool thread.
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int32_t p = positions[static_cast<size_t>(t)];
    if (p < 0 || p >= ctx.max_context()) {
      fail("attention: position {} is outside the reserved context of {}", p, ctx.max_context());
    }
  }
  if (group > ctx.max_group()) fail("attention: {} query heads per KV head exceed the reserved {}", group, ctx.max_group());
  if (head_dim > ctx.max_row()) fail("attention: head size {} exceeds the row scratch {}", head_dim, ctx.max_row());
  for (const KvView* kv : {&k, &v}) {
    if (head_dim % dtype_info(kv->type).block_elems != 0) {
      fail("attention: head size {} is not a multiple of the {} cache block", head_dim, dtype_name(kv->type));
    }
  }
  static const bool f16c = cpu_features().f16c && cpu_features().avx;
  const int64_t stride = ctx.max_context();  // between one query head's scores and the next
  ctx.pool().parallel_for(n_tokens * n_head_kv, [&](int thread, int64_t begin, int64_t end) {
    float* scores = ctx.score_scratch(thread);
    float* tmp = ctx.row_scratch(thread);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / n_head_kv, g = job % n_head_kv;
      const int64_t n_keys = positions[static_cast<size_t>(t)] + 1;
      const float* qg = q + (t * n_head + g * group) * head_dim;
      for (int64_t s = 0; s < n_keys; ++s) {
        const float* kr = kv_head(k, s, g, head_dim, tmp, f16c);
        for (int64_t j = 0; j < group; ++j) scores[j * stride + s] = dot_f32(qg + j * head_dim, kr, head_dim) * scale;
      }
      for (int64_t j = 0; j < group; ++j) {
        float* sj = scores + j * stride;
        const float max_score = *std::max_element(sj, sj + n_keys);
        float sum = 0;
        for (int64_t s = 0; s < n_keys; ++s) {
          sj[s] = std::exp(sj[s] - max_score);
          sum += sj[s];
        }
        const float inv = 1.0f / sum;
        for (int64_t s = 0; s < n_keys; ++s) sj[s] *= inv;
      }
      float* og = out + (t * n_head + g * group) * head_dim;
      std::fill(og, og + group * head_dim, 0.0f);
      for (int64_t s = 0; s < n_keys; ++s) {
        const float* vr = kv_head(v, s, g, head_dim, tmp, f16c);
        for (int64_t j = 0; j < group; ++j) {
          const float p = scores[j * stride + s];
          float* o = og + j * head_dim;
          for (int64_t i = 0; i < head_dim; ++i) o[i] += p * vr[i];
        }
      }
    }
  });
}

void swiglu(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
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

}  // namespace tandem::cpu
