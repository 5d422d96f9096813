// Causal grouped-query attention in the flash-attention form (cpu_ops.h: attention()).
//
// A job is one KV head and a tile of up to kTileTokens query tokens: every query head of
// the group for those tokens (the job's "rows") walks the keys in tiles of kTileKeys.
// Each K/V tile is decoded from the cache once per job (K transposed, so the scores of a
// row are plain vertical FMAs with no horizontal sums) and used by all rows; softmax is
// online (running max and sum per row, earlier sums rescaled when the max grows), so no
// score row longer than a tile ever exists, whatever the context length.
//
// The three inner loops (scores, exp, value sums) have a portable and an AVX2+FMA version,
// picked once from the CPU's features; they differ by rounding only (vec_math.h's exp).
// Scores and value sums also have an AVX-512 version, the AVX2 one's bits at twice the width.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/vec_math.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/half.h"
#include "quant/dequantize.h"

namespace tandem::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---- inner loops -------------------------------------------------------------------------

// s[r][j] = scale * q_r . kt[.][j] for r < rows, j < kTileKeys; q rows are d apart,
// kt is [d][kTileKeys].
using ScoresFn = void (*)(const float* q, int64_t rows, const float* kt, int64_t d, float scale, float* s);
// x[j] = exp(x[j] - m) for j < n; returns the sum.
using ExpSumFn = float (*)(float* x, int64_t n, float m);
// o_r += sum_{j < n} p[r][j] * v[j] for r < rows; p rows are kTileKeys apart, v rows and
// o rows d apart.
using ValuesFn = void (*)(const float* p, int64_t rows, const float* v, int64_t n, int64_t d, float* o);

void scores_portable(const float* q, int64_t rows, const float* kt, int64_t d, float scale, float* s) {
  for (int64_t r = 0; r < rows; ++r) {
    float acc[kAttentionTileKeys] = {};
    for (int64_t i = 0; i < d; ++i) {
      const float qi = q[r * d + i];
      for (int64_t j = 0; j < kAttentionTileKeys; ++j) acc[j] += qi * kt[i * kAttentionTileKeys + j];
    }
    for (int64_t j = 0; j < kAttentionTileKeys; ++j) s[r * kAttentionTileKeys + j] = acc[j] * scale;
  }
}

float exp_sum_portable(float* x, int64_t n, float m) {
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += (x[j] = std::exp(x[j] - m));
  return sum;
}

void values_portable(const float* p, int64_t rows, const float* v, int64_t n, int64_t d, float* o) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      const float pj = p[r * kAttentionTileKeys + j];
      for (int64_t i = 0; i < d; ++i) o[r * d + i] += pj * v[j * d + i];
    }
  }
}

// The vector loops' value sums for the last d % 32 output columns.
void values_tail(const float* p, int64_t rows, const float* v, int64_t n, int64_t d, float* o) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      const float pj = p[r * kAttentionTileKeys + j];
      for (int64_t i = d - d % 32; i < d; ++i) o[r * d + i] += pj * v[j * d + i];
    }
  }
}

static_assert(kAttentionTileKeys == 32, "the AVX2 loops hold a key tile in four vectors");

__attribute__((target("avx2,fma"))) void scores_avx2(const float* q, int64_t rows, const float* kt, int64_t d,
                                                      float scale, float* s) {
  const __m256 vscale = _mm256_set1_ps(scale);
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {  // two rows share each loaded key vector
    __m256 a[2][4];
    for (auto& row : a) {
      for (auto& x : row) x = _mm256_setzero_ps();
    }
    const float* q0 = q + r * d;
    const float* q1 = q0 + d;
    for (int64_t i = 0; i < d; ++i) {
      const float* k = kt + i * kAttentionTileKeys;
      const __m256 b0 = _mm256_broadcast_ss(q0 + i), b1 = _mm256_broadcast_ss(q1 + i);
      for (int x = 0; x < 4; ++x) {
        const __m256 kv = _mm256_loadu_ps(k + 8 * x);
        a[0][x] = _mm256_fmadd_ps(b0, kv, a[0][x]);
        a[1][x] = _mm256_fmadd_ps(b1, kv, a[1][x]);
      }
    }
    for (int y = 0; y < 2; ++y) {
      for (int x = 0; x < 4; ++x) _mm256_storeu_ps(s + (r + y) * kAttentionTileKeys + 8 * x, _mm256_mul_ps(a[y][x], vscale));
    }
  }
  for (; r < rows; ++r) {
    __m256 a[4];
    for (auto& x : a) x = _mm256_setzero_ps();
    for (int64_t i = 0; i < d; ++i) {
      const __m256 b = _mm256_broadcast_ss(q + r * d + i);
      for (int x = 0; x < 4; ++x) a[x] = _mm256_fmadd_ps(b, _mm256_loadu_ps(kt + i * kAttentionTileKeys + 8 * x), a[x]);
    }
    for (int x = 0; x < 4; ++x) _mm256_storeu_ps(s + r * kAttentionTileKeys + 8 * x, _mm256_mul_ps(a[x], vscale));
  }
}

__attribute__((target("avx2,fma"))) float exp_sum_avx2(float* x, int64_t n, float m) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm));
    _mm256_storeu_ps(x + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  float total = hsum(sum);
  for (; j < n; ++j) total += (x[j] = std::exp(x[j] - m));
  return total;
}

__attribute__((target("avx2,fma"))) void values_avx2(const float* p, int64_t rows, const float* v, int64_t n,
                                                      int64_t d, float* o) {
  // 32 output floats of two rows in registers while the tile's value rows go past.
  for (int64_t c = 0; c + 32 <= d; c += 32) {
    int64_t r = 0;
    for (; r + 2 <= rows; r += 2) {
      __m256 acc[2][4];
      for (int y = 0; y < 2; ++y) {
        for (int x = 0; x < 4; ++x) acc[y][x] = _mm256_loadu_ps(o + (r + y) * d + c + 8 * x);
      }
      for (int64_t j = 0; j < n; ++j) {
        const __m256 p0 = _mm256_broadcast_ss(p + r * kAttentionTileKeys + j);
        const __m256 p1 = _mm256_broadcast_ss(p + (r + 1) * kAttentionTileKeys + j);
        for (int x = 0; x < 4; ++x) {
          const __m256 vv = _mm256_loadu_ps(v + j * d + c + 8 * x);
          acc[0][x] = _mm256_fmadd_ps(p0, vv, acc[0][x]);
          acc[1][x] = _mm256_fmadd_ps(p1, vv, acc[1][x]);
        }
      }
      for (int y = 0; y < 2; ++y) {
        for (int x = 0; x < 4; ++x) _mm256_storeu_ps(o + (r + y) * d + c + 8 * x, acc[y][x]);
      }
    }
    for (; r < rows; ++r) {
      __m256 acc[4];
      for (int x = 0; x < 4; ++x) acc[x] = _mm256_loadu_ps(o + r * d + c + 8 * x);
      for (int64_t j = 0; j < n; ++j) {
        const __m256 pj = _mm256_broadcast_ss(p + r * kAttentionTileKeys + j);
        for (int x = 0; x < 4; ++x) acc[x] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + j * d + c + 8 * x), acc[x]);
      }
      for (int x = 0; x < 4; ++x) _mm256_storeu_ps(o + r * d + c + 8 * x, acc[x]);
    }
  }
  values_tail(p, rows, v, n, d, o);
}

// AVX-512: a key tile in two vectors, four rows at once (eight accumulators, as AVX2's two
// rows); each row's sums take the same operations in the same order as the AVX2 loops, so
// the results are the same bits at twice the width (Zen 5: the 0.5B's prompt spent 13% of
// its time in the AVX2 loops).
__attribute__((target("avx512f"))) void scores_avx512(const float* q, int64_t rows, const float* kt, int64_t d,
                                                      float scale, float* s) {
  const __m512 vscale = _mm512_set1_ps(scale);
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    __m512 a[4][2];
    for (auto& row : a) row[0] = row[1] = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; ++i) {
      const __m512 k0 = _mm512_loadu_ps(kt + i * kAttentionTileKeys), k1 = _mm512_loadu_ps(kt + i * kAttentionTileKeys + 16);
      for (int y = 0; y < 4; ++y) {
        const __m512 b = _mm512_set1_ps(q[(r + y) * d + i]);
        a[y][0] = _mm512_fmadd_ps(b, k0, a[y][0]);
        a[y][1] = _mm512_fmadd_ps(b, k1, a[y][1]);
      }
    }
    for (int y = 0; y < 4; ++y) {
      for (int x = 0; x < 2; ++x) _mm512_storeu_ps(s + (r + y) * kAttentionTileKeys + 16 * x, _mm512_mul_ps(a[y][x], vscale));
    }
  }
  for (; r < rows; ++r) {
    __m512 a[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t i = 0; i < d; ++i) {
      const __m512 b = _mm512_set1_ps(q[r * d + i]);
      for (int x = 0; x < 2; ++x) a[x] = _mm512_fmadd_ps(b, _mm512_loadu_ps(kt + i * kAttentionTileKeys + 16 * x), a[x]);
    }
    for (int x = 0; x < 2; ++x) _mm512_storeu_ps(s + r * kAttentionTileKeys + 16 * x, _mm512_mul_ps(a[x], vscale));
  }
}

__attribute__((target("avx512f"))) void values_avx512(const float* p, int64_t rows, const float* v, int64_t n,
                                                      int64_t d, float* o) {
  // 32 output floats of four rows in registers while the tile's value rows go past.
  for (int64_t c = 0; c + 32 <= d; c += 32) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      __m512 acc[4][2];
      for (int y = 0; y < 4; ++y) {
        for (int x = 0; x < 2; ++x) acc[y][x] = _mm512_loadu_ps(o + (r + y) * d + c + 16 * x);
      }
      for (int64_t j = 0; j < n; ++j) {
        const __m512 v0 = _mm512_loadu_ps(v + j * d + c), v1 = _mm512_loadu_ps(v + j * d + c + 16);
        for (int y = 0; y < 4; ++y) {
          const __m512 pj = _mm512_set1_ps(p[(r + y) * kAttentionTileKeys + j]);
          acc[y][0] = _mm512_fmadd_ps(pj, v0, acc[y][0]);
          acc[y][1] = _mm512_fmadd_ps(pj, v1, acc[y][1]);
        }
      }
      for (int y = 0; y < 4; ++y) {
        for (int x = 0; x < 2; ++x) _mm512_storeu_ps(o + (r + y) * d + c + 16 * x, acc[y][x]);
      }
    }
    for (; r < rows; ++r) {
      __m512 acc[2] = {_mm512_loadu_ps(o + r * d + c), _mm512_loadu_ps(o + r * d + c + 16)};
      for (int64_t j = 0; j < n; ++j) {
        const __m512 pj = _mm512_set1_ps(p[r * kAttentionTileKeys + j]);
        for (int x = 0; x < 2; ++x) acc[x] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(v + j * d + c + 16 * x), acc[x]);
      }
      for (int x = 0; x < 2; ++x) _mm512_storeu_ps(o + r * d + c + 16 * x, acc[x]);
    }
  }
  values_tail(p, rows, v, n, d, o);
}

struct AttentionLoops {
  ScoresFn scores;
  ExpSumFn exp_sum;
  ValuesFn values;
};

const AttentionLoops& attention_loops() {
  static const AttentionLoops loops = [] {
    const CpuFeatures& f = cpu_features();
    if (f.avx512f) return AttentionLoops{scores_avx512, exp_sum_avx2, values_avx512};
    if (f.avx2 && f.fma) return AttentionLoops{scores_avx2, exp_sum_avx2, values_avx2};
    return AttentionLoops{scores_portable, exp_sum_portable, values_portable};
  }();
  return loops;
}

// ---- cache tiles -------------------------------------------------------------------------

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

// Head g of cache row `pos` decoded to d floats.
void decode_head(const KvView& kv, int64_t pos, int64_t g, int64_t d, float* dst, bool f16c) {
  const DTypeInfo& info = dtype_info(kv.type);
  const uint8_t* src = kv.data + static_cast<size_t>(pos) * kv.row_bytes +
                       static_cast<size_t>(g * d / info.block_elems) * info.block_bytes;
  if (kv.type == DType::F32) {
    std::memcpy(dst, src, static_cast<size_t>(d) * sizeof(float));
  } else if (kv.type == DType::F16 && f16c) {
    f16_row_to_f32_f16c(src, dst, d);
  } else {
    quant::dequantize_row(kv.type, src, dst, d);
  }
}

// The K^T tile [d][kTileKeys] (zero past n) and the V tile [n][d] of cache rows s0..s0+n-1,
// head g, any cache type.
using TileFn = void (*)(const KvView& k, const KvView& v, int64_t s0, int64_t n, int64_t g, int64_t d, float* keys_t,
                        float* values, float* row);

void load_tile_rows(const KvView& k, const KvView& v, int64_t s0, int64_t n, int64_t g, int64_t d, float* keys_t,
                    float* values, float* row) {
  static const bool f16c = cpu_features().f16c && cpu_features().avx;
  constexpr int64_t TK = kAttentionTileKeys;
  for (int64_t j = 0; j < n; ++j) {
    decode_head(k, s0 + j, g, d, row, f16c);
    for (int64_t i = 0; i < d; ++i) keys_t[i * TK + j] = row[i];
    decode_head(v, s0 + j, g, d, values + j * d, f16c);
  }
  for (int64_t j = n; j < TK; ++j) {
    for (int64_t i = 0; i < d; ++i) keys_t[i * TK + j] = 0.0f;
  }
}

__attribute__((target("avx2,fma,f16c"))) inline __m256 half8(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// The same for F16 caches and d a multiple of 8: 8 keys x 8 dims at a time are widened and
// transposed in registers, where the row loader goes through a scratch row and scalar
// stores (decode attention over a cache in L2/L3: 25% less time).
__attribute__((target("avx2,fma,f16c"))) void load_tile_f16_avx2(const KvView& k, const KvView& v, int64_t s0,
                                                                  int64_t n, int64_t g, int64_t d, float* keys_t,
                                                                  float* values, float*) {
  constexpr int64_t TK = kAttentionTileKeys;
  const uint8_t* kbase = k.data + static_cast<size_t>(s0) * k.row_bytes + static_cast<size_t>(g * d) * 2;
  const uint8_t* vbase = v.data + static_cast<size_t>(s0) * v.row_bytes + static_cast<size_t>(g * d) * 2;
  for (int64_t j0 = 0; j0 < TK; j0 += 8) {
    const int64_t m = std::clamp<int64_t>(n - j0, 0, 8);  // keys of this block in the tile
    for (int64_t i0 = 0; i0 < d; i0 += 8) {
      __m256 r[8];
      for (int64_t x = 0; x < 8; ++x) {
        r[x] = x < m ? half8(kbase + static_cast<size_t>(j0 + x) * k.row_bytes + static_cast<size_t>(i0) * 2)
                     : _mm256_setzero_ps();
      }
      // 8x8 transpose: row x lane y -> row y lane x.
      const __m256 a0 = _mm256_unpacklo_ps(r[0], r[1]), a1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 a2 = _mm256_unpacklo_ps(r[2], r[3]), a3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 a4 = _mm256_unpacklo_ps(r[4], r[5]), a5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 a6 = _mm256_unpacklo_ps(r[6], r[7]), a7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
      const __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
      const __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
      const __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
      float* dst = keys_t + i0 * TK + j0;
      _mm256_storeu_ps(dst + 0 * TK, _mm256_permute2f128_ps(b0, b4, 0x20));
      _mm256_storeu_ps(dst + 1 * TK, _mm256_permute2f128_ps(b1, b5, 0x20));
      _mm256_storeu_ps(dst + 2 * TK, _mm256_permute2f128_ps(b2, b6, 0x20));
      _mm256_storeu_ps(dst + 3 * TK, _mm256_permute2f128_ps(b3, b7, 0x20));
      _mm256_storeu_ps(dst + 4 * TK, _mm256_permute2f128_ps(b0, b4, 0x31));
      _mm256_storeu_ps(dst + 5 * TK, _mm256_permute2f128_ps(b1, b5, 0x31));
      _mm256_storeu_ps(dst + 6 * TK, _mm256_permute2f128_ps(b2, b6, 0x31));
      _mm256_storeu_ps(dst + 7 * TK, _mm256_permute2f128_ps(b3, b7, 0x31));
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t* src = vbase + static_cast<size_t>(j) * v.row_bytes;
    for (int64_t i0 = 0; i0 < d; i0 += 8) _mm256_storeu_ps(values + j * d + i0, half8(src + static_cast<size_t>(i0) * 2));
  }
}

TileFn tile_loader(const KvView& k, const KvView& v, int64_t d) {
  static const bool avx2 = cpu_features().avx2 && cpu_features().fma && cpu_features().f16c;
  return avx2 && k.type == DType::F16 && v.type == DType::F16 && d % 8 == 0 ? load_tile_f16_avx2 : load_tile_rows;
}

}  // namespace

void attention(OpContext& ctx, const float* q, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
               int64_t head_dim, const KvView& k, const KvView& v, std::span<const int32_t> positions,
               float* out) {
  const int64_t group = n_head / n_head_kv;  // consecutive query heads share a KV head
  const int64_t d = head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // Checked here, not in the workers: an exception must not escape a pool thread.
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int32_t p = positions[static_cast<size_t>(t)];
    if (p < 0 || p >= ctx.max_context()) {
      fail("attention: position {} is outside the reserved context of {}", p, ctx.max_context());
    }
  }
  if (group > ctx.max_group()) fail("attention: {} query heads per KV head exceed the reserved {}", group, ctx.max_group());
  if (d > ctx.max_row()) fail("attention: head size {} exceeds the row scratch {}", d, ctx.max_row());
  for (const KvView* kv : {&k, &v}) {
    if (d % dtype_info(kv->type).block_elems != 0) {
      fail("attention: head size {} is not a multiple of the {} cache block", d, dtype_name(kv->type));
    }
  }
  const TileFn load_tile = tile_loader(k, v, d);
  const AttentionLoops& loops = attention_loops();
  constexpr int64_t TK = kAttentionTileKeys;
  const int64_t n_tiles = (n_tokens + kAttentionTileTokens - 1) / kAttentionTileTokens;
  int64_t max_keys = 0;
  for (const int32_t p : positions) max_keys = std::max<int64_t>(max_keys, p + 1);
  const int64_t splits = attention_key_splits(n_tiles * n_head_kv, ctx.pool().size(), max_keys);
  const int64_t segment = (max_keys + splits * TK - 1) / (splits * TK) * TK;  // keys per split, whole tiles
  // Split: each split's unnormalised sums, with the running max and sum of every row.
  // Per split: o [n_tokens][n_head][d], then (max, sum) per row.
  const size_t partial_o = static_cast<size_t>(n_tokens * n_head * d);
  const size_t split_stride = partial_o + 2 * static_cast<size_t>(n_tokens * n_head);
  float* partials = splits > 1 ? ctx.attention_partials(static_cast<size_t>(splits) * split_stride) : nullptr;

  // Jobs run latest token tile first: under the causal mask those see the most keys, and
  // handing them out first keeps the threads' finishing times together.
  ctx.pool().parallel_for(
      n_tiles * n_head_kv * splits,
      [&](int thread, int64_t begin, int64_t end) {
        const AttentionScratch scratch = ctx.attention_scratch(thread);
        for (int64_t job = begin; job < end; ++job) {
          const int64_t split = job % splits, head_job = job / splits;
          const int64_t tile = n_tiles - 1 - head_job / n_head_kv, g = head_job % n_head_kv;
          const int64_t t0 = tile * kAttentionTileTokens, t1 = std::min(n_tokens, t0 + kAttentionTileTokens);
          float* dst = splits > 1 ? partials + static_cast<size_t>(split) * split_stride : out;
          int64_t n_keys = 0;
          for (int64_t t = t0; t < t1; ++t) n_keys = std::max<int64_t>(n_keys, positions[static_cast<size_t>(t)] + 1);
          const int64_t k_begin = split * segment, k_end = std::min(n_keys, k_begin + segment);
          for (int64_t t = t0; t < t1; ++t) {
            std::fill_n(dst + (t * n_head + g * group) * d, group * d, 0.0f);
          }
          std::fill_n(scratch.max, (t1 - t0) * group, kNegInf);
          std::fill_n(scratch.sum, (t1 - t0) * group, 0.0f);
          for (int64_t s0 = k_begin; s0 < k_end; s0 += TK) {
            const int64_t n = std::min(TK, k_end - s0);
            load_tile(k, v, s0, n, g, d, scratch.keys_t, scratch.values, scratch.row);
            for (int64_t t = t0; t < t1; ++t) {
              const int64_t valid = std::min<int64_t>(n, positions[static_cast<size_t>(t)] + 1 - s0);
              if (valid <= 0) continue;  // this token's keys end before the tile
              const int64_t row0 = (t - t0) * group;
              float* s = scratch.scores;
              loops.scores(q + (t * n_head + g * group) * d, group, scratch.keys_t, d, scale, s);
              float* o = dst + (t * n_head + g * group) * d;
              for (int64_t r = 0; r < group; ++r) {
                float* sr = s + r * TK;
                const float tile_max = *std::max_element(sr, sr + valid);
                float& m = scratch.max[row0 + r];
                const float m_new = std::max(m, tile_max);
                const float rescale = m == kNegInf ? 0.0f : std::exp(m - m_new);
                scratch.sum[row0 + r] = scratch.sum[row0 + r] * rescale + loops.exp_sum(sr, valid, m_new);
                if (rescale != 1.0f) {
                  for (int64_t i = 0; i < d; ++i) o[r * d + i] *= rescale;
                }
                m = m_new;
              }
              loops.values(s, group, scratch.values, valid, d, o);
            }
          }
          for (int64_t t = t0; t < t1; ++t) {
            const int64_t row0 = (t - t0) * group;
            if (splits > 1) {  // kept for the merge (a row with no key in this split: max -inf, sum 0)
              float* ml = dst + partial_o + 2 * (t * n_head + g * group);
              for (int64_t r = 0; r < group; ++r) ml[2 * r] = scratch.max[row0 + r], ml[2 * r + 1] = scratch.sum[row0 + r];
              continue;
            }
            float* o = out + (t * n_head + g * group) * d;
            for (int64_t r = 0; r < group; ++r) {
              const float inv = 1.0f / scratch.sum[row0 + r];
              for (int64_t i = 0; i < d; ++i) o[r * d + i] *= inv;
            }
          }
        }
      },
      1);
  if (splits == 1) return;
  // The splits' sums rescaled to the largest max and added (each row saw key 0, so split 0
  // always has a finite max), rows spread over the pool: with many threads and splits a
  // serial merge would cost what the split saved.
  ctx.pool().parallel_for(n_tokens * n_head, [&](int, int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const size_t ml = partial_o + 2 * static_cast<size_t>(row);
      float m = kNegInf;
      for (int64_t sp = 0; sp < splits; ++sp) m = std::max(m, partials[sp * split_stride + ml]);
      float* o = out + row * d;
      std::fill_n(o, d, 0.0f);
      float sum = 0;
      for (int64_t sp = 0; sp < splits; ++sp) {
        const float* base = partials + sp * split_stride;
        if (base[ml] == kNegInf) continue;  // no key of this row in the split
        const float w = std::exp(base[ml] - m);
        sum += w * base[ml + 1];
        const float* os = base + row * d;
        for (int64_t i = 0; i < d; ++i) o[i] += w * os[i];
      }
      const float inv = 1.0f / sum;
      for (int64_t i = 0; i < d; ++i) o[i] *= inv;
    }
  }, 4);
}

int64_t attention_key_splits(int64_t jobs, int64_t threads, int64_t keys) {
  if (jobs >= threads || keys < 2 * kAttentionMinSplitKeys) return 1;
  const int64_t want = (2 * threads + jobs - 1) / jobs;  // about two jobs per thread
  return std::max<int64_t>(1, std::min(want, keys / kAttentionMinSplitKeys));
}

}  // namespace tandem::cpu
