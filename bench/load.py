#!/usr/bin/env python3
"""Load test for OpenAI-compatible servers: N concurrent streaming chat clients for a fixed
time against one server (tandem serve or llama-server), on loopback. Reports errors,
completed requests, aggregate generated tokens/s, time to first token p50/p99 and the
server's RSS at start and end. Bounded in clients and time; stops by itself.

    bench/load.py --url http://127.0.0.1:8080 --pid PID --clients 64 --seconds 600 [--json out.json]
"""
import argparse
import asyncio
import json
import random
import statistics
import time

import httpx

from serverbench import require_loopback, wait_healthy


TOPICS = ["the sea", "a lighthouse", "binary search", "rust and c++", "autumn", "a cat", "GGUF files",
          "the moon", "coffee", "mountains", "a compiler", "rain", "trains", "chess", "bees", "a library"]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def client(url, stop_at, rng, max_tokens, out):
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as h:
        while time.time() < stop_at:
            body = {"messages": [{"role": "user", "content": f"Write two sentences about {rng.choice(TOPICS)}."}],
                    "stream": True, "max_tokens": max_tokens, "temperature": 0.7, "seed": rng.randrange(1 << 30),
                    "stream_options": {"include_usage": True}}
            t0 = time.time()
            first = None
            tokens = 0
            usage_tokens = None
            try:
                async with h.stream("POST", url + "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        await r.aread()
                        out["errors"].append(f"HTTP {r.status_code}: {r.text[:200]}")
                        continue
                    async for line in r.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if chunk.get("usage"):
                            usage_tokens = chunk["usage"].get("completion_tokens")
                        for c in chunk.get("choices", []):
                            d = c.get("delta", {})
                            if d.get("content") or d.get("reasoning_content"):
                                if first is None:
                                    first = time.time() - t0
                                tokens += 1
                if first is None:
                    out["errors"].append("no content streamed")
                    continue
                out["ttft"].append(first)
                out["tokens"] += usage_tokens if usage_tokens is not None else tokens
                out["requests"] += 1
            except (httpx.HTTPError, json.JSONDecodeError) as e:
                out["errors"].append(f"{type(e).__name__}: {e}")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True, help="server process id (for RSS)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--name", default="server")
    ap.add_argument("--json")
    a = ap.parse_args()
    require_loopback(a.url, "load.py")
    wait_healthy(a.url)
    rss0 = rss_mib(a.pid)
    out = {"errors": [], "ttft": [], "tokens": 0, "requests": 0}
    t0 = time.time()
    stop_at = t0 + a.seconds
    await asyncio.gather(*(client(a.url, stop_at, random.Random(i), a.max_tokens, out) for i in range(a.clients)))
    wall = time.time() - t0
    rss1 = rss_mib(a.pid)
    ttft = sorted(out["ttft"])
    q = lambda p: ttft[min(len(ttft) - 1, int(p * len(ttft)))] if ttft else float("nan")
    result = {"name": a.name, "clients": a.clients, "seconds": round(wall, 1), "requests": out["requests"],
              "errors": len(out["errors"]), "gen_tok_s": round(out["tokens"] / wall, 2),
              "ttft_p50_s": round(q(0.50), 3), "ttft_p99_s": round(q(0.99), 3),
              "ttft_mean_s": round(statistics.mean(ttft), 3) if ttft else None,
              "rss_start_mib": round(rss0, 1), "rss_end_mib": round(rss1, 1), "first_errors": out["errors"][:5]}
    print(json.dumps(result))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    asyncio.run(main())
