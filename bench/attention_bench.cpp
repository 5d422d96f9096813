// Decode-step attention over an F16 (or F32) KV cache: one query token (or a verify pass of
// a few) against `--depth` cached positions in each of `--layers` layers, on the engine's
// thread pool — the part of a long-context decode step that grows with the context. Each
// layer has its own cache, so at depth the step streams from memory as the engine's does.
// Prints ms per step (best of the rounds) and the cache bytes read per second. A tool, not
// a test.
//   tandem_attention_bench [--depth 4096] [--layers 24] [--kv-heads 2] [--group 7]
//                          [--head-dim 64] [--tokens 1] [--cache f16|f32] [-t 2] [--reps 20]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "backend/cpu/cpu_ops.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"

int main(int argc, char** argv) {
  using namespace tandem;
  using namespace tandem::cpu;
  CLI::App app{"Decode-step attention over a KV cache at a given depth"};
  int64_t depth = 4096, layers = 24, kv_heads = 2, group = 7, head_dim = 64, tokens = 1;
  int threads = 0, reps = 20, rounds = 5;
  std::string cache = "f16";
  app.add_option("--depth", depth, "Cached positions before the step")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--layers", layers, "Layers, each with its own cache")->check(CLI::Range(int64_t{1}, int64_t{512}));
  app.add_option("--kv-heads", kv_heads, "KV heads")->check(CLI::Range(int64_t{1}, int64_t{64}));
  app.add_option("--group", group, "Query heads per KV head")->check(CLI::Range(int64_t{1}, int64_t{64}));
  app.add_option("--head-dim", head_dim, "Head size")->check(CLI::Range(int64_t{8}, int64_t{512}));
  app.add_option("--tokens", tokens, "Query tokens per step (1: decode; k + 1: a verify pass)")
      ->check(CLI::Range(int64_t{1}, int64_t{64}));
  app.add_option("--cache", cache, "Cache type")->check(CLI::IsMember({"f16", "f32"}));
  app.add_option("-t,--threads", threads, "Threads (0: the default count)")->check(CLI::Range(0, 1024));
  app.add_option("--reps", reps, "Steps per round")->check(CLI::Range(1, 100000));
  app.add_option("--rounds", rounds, "Rounds (the best counts)")->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);
  try {
    const DType type = cache == "f16" ? DType::F16 : DType::F32;
    const size_t elem = type == DType::F16 ? 2 : 4;
    const int64_t width = kv_heads * head_dim, n_pos = depth + tokens, n_head = kv_heads * group;
    const size_t layer_bytes = static_cast<size_t>(n_pos * width) * elem;
    std::vector<std::vector<uint8_t>> k(static_cast<size_t>(layers)), v(static_cast<size_t>(layers));
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    for (auto* side : {&k, &v}) {
      for (std::vector<uint8_t>& bytes : *side) {
        bytes.resize(layer_bytes);
        for (size_t i = 0; i < layer_bytes / elem; ++i) {
          const float x = normal(rng);
          if (type == DType::F16) {
            const uint16_t h = f32_to_f16(x);
            std::memcpy(bytes.data() + 2 * i, &h, 2);
          } else {
            std::memcpy(bytes.data() + 4 * i, &x, 4);
          }
        }
      }
    }
    OpContext ctx(threads > 0 ? threads : default_thread_count(), head_dim);
    ctx.reserve_context(n_pos, group);
    std::vector<float> q(static_cast<size_t>(tokens * n_head * head_dim)), out(q.size());
    for (float& x : q) x = normal(rng);
    std::vector<int32_t> positions(static_cast<size_t>(tokens));
    for (int64_t t = 0; t < tokens; ++t) positions[static_cast<size_t>(t)] = static_cast<int32_t>(depth + t);
    const auto step = [&] {
      for (int64_t l = 0; l < layers; ++l) {
        const KvView kv_k{k[static_cast<size_t>(l)].data(), type, static_cast<size_t>(width) * elem};
        const KvView kv_v{v[static_cast<size_t>(l)].data(), type, static_cast<size_t>(width) * elem};
        attention(ctx, q.data(), tokens, n_head, kv_heads, head_dim, kv_k, kv_v, positions, out.data());
      }
    };
    step();  // warm-up
    const int64_t splits = attention_key_splits(kv_heads * ((tokens + kAttentionTileTokens - 1) / kAttentionTileTokens),
                                                ctx.pool().size(), depth + tokens);
    fmt::print("depth {}, {} layers, {} KV heads x {}, d {}, {} token(s), {} cache, {} threads, key splits {}\n", depth,
               layers, kv_heads, group, head_dim, tokens, cache, ctx.pool().size(), splits);
    double best = 1e30;
    for (int r = 0; r < rounds; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) step();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
    }
    const double bytes = 2.0 * static_cast<double>(layers) * static_cast<double>(depth + tokens) * width * elem;
    fmt::print("{:.3f} ms per step, {:.1f} GB/s of cache\n", best * 1e3, bytes / best / 1e9);
  } catch (const std::exception& e) {
    fmt::print(stderr, "tandem_attention_bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
