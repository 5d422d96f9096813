"""Decode speed with and without a JSON Schema constraint, tandem serve beside llama-server,
same model, same threads, one server at a time on loopback (never both at once).

    .venv/bin/python bench/grammar_decode.py --tandem build/release/tandem \
        --llama-server /work/peers/llama.cpp/build/bin/llama-server --model MODEL.gguf [-t 2] [--reps 3]
        [--baseline OTHER_TANDEM_BINARY]   (an A/B of two tandem builds; --llama-server optional then)

For each server: one warm-up request, then `reps` greedy requests unconstrained and `reps`
with the schema (OpenAI response_format; llama-server turns it into its grammar the same
way). Decode tok/s = completion tokens / generation seconds as each server reports them
(tandem: usage.timings.generation_s; llama-server: timings.predicted_per_second). Prints a
markdown table and each constrained output's validity (jsonschema)."""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import httpx
import jsonschema

ORDER = json.loads((Path(__file__).parent / "grammar_order_schema.json").read_text())  # shared with grammar_bench
SCHEMA = {"type": "array", "items": ORDER, "minItems": 2, "maxItems": 2}
PROMPT = ("Write a JSON array of 2 shop orders. Each order has id (uuid), customer (name, email, address with "
          "street, city, zip), items (sku, qty, price) and status (open, paid or shipped). Output only JSON.")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, port):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not become healthy")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def request(port, constrained, n, kind):
    body = {"messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": n, "seed": 1}
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "orders", "schema": SCHEMA, "strict": True}}
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=900).json()
    text = r["choices"][0]["message"]["content"]
    if kind != "llama.cpp":
        tokens = r["usage"]["completion_tokens"]
        rate = (tokens - 1) / r["usage"]["timings"]["generation_s"]  # the first token comes with the prompt
    else:
        rate = r["timings"]["predicted_per_second"]
        tokens = r["timings"]["predicted_n"]
    valid = None
    if constrained:
        try:
            jsonschema.validate(json.loads(text), SCHEMA)
            valid = True
        except Exception:  # noqa: BLE001  (report, do not stop the benchmark)
            valid = False
    return rate, tokens, valid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--llama-server")
    ap.add_argument("--baseline", help="a second tandem binary, measured the same way (A/B)")
    ap.add_argument("--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=600)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    if not a.llama_server and not a.baseline:
        ap.error("give --llama-server, --baseline or both")
    servers = [("tandem", a.tandem)] + ([("baseline", a.baseline)] if a.baseline else []) + \
        ([("llama.cpp", a.llama_server)] if a.llama_server else [])
    rows = []
    for kind, binary in servers:
        port = free_port()
        if kind != "llama.cpp":
            cmd = [binary, "serve", "-m", a.model, "--port", str(port), "-t", str(a.threads), "-np", "1", "-c", "4096"]
        else:
            cmd = [binary, "-m", a.model, "--port", str(port), "-t", str(a.threads), "-np", "1", "-c", "4096",
                   "--no-webui"]
        proc = start(cmd, port)
        try:
            request(port, False, 16, kind)  # warm-up
            for constrained in (False, True):
                results = [request(port, constrained, a.n, kind) for _ in range(a.reps)]
                rates = [r[0] for r in results]
                rows.append((kind, constrained, statistics.median(rates), min(rates), max(rates),
                             results[0][1], [r[2] for r in results]))
        finally:
            stop(proc)
    print("| server | schema | decode tok/s (median) | min-max (best) | tokens | outputs valid |")
    print("|---|---|---|---|---|---|")
    for kind, constrained, med, lo, hi, tokens, valid in rows:
        print(f"| {kind} | {'yes' if constrained else 'no'} | {med:.2f} | {lo:.2f}-{hi:.2f} | {tokens} | "
              f"{'-' if not constrained else sum(bool(v) for v in valid)}/{len(valid) if constrained else ''} |")
    # On a busy machine the best run is the steadier figure; both are printed.
    for label, idx in (("median", 2), ("best", 4)):
        base = {r[0]: r[idx] for r in rows if not r[1]}
        for r in rows:
            if r[1]:
                print(f"{label}: {r[0]} constrained / unconstrained = {r[idx] / base[r[0]]:.3f}")
        t = next(r[idx] for r in rows if r[0] == "tandem" and r[1])
        for other, _ in servers[1:]:
            o = next(r[idx] for r in rows if r[0] == other and r[1])
            print(f"{label}: constrained tandem / {other} = {t / o:.3f}")


if __name__ == "__main__":
    main()
