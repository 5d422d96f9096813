#!/usr/bin/env python3
"""Tokenizer throughput, tandem vs HF tokenizers, one thread, same corpus, same machine.

Both encode every corpus line separately (no BOS/EOS, special tokens not parsed) for
ROUNDS rounds; the best round counts. HF runs single-threaded (RAYON_NUM_THREADS=1,
TOKENIZERS_PARALLELISM=false, one encode() call per line; also encode_batch on that one thread, which pays
Python's per-call overhead once). tandem runs as
build/release/tokenizer_bench on the GGUF converted from the same tokenizer.json.

Usage: tokenizer_bench.py TOKENIZER_BENCH_BIN TOKENIZER_JSON VOCAB_GGUF CORPUS [ROUNDS]
"""
import json
import os
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402  (after the thread settings)

bench, tokenizer_json, vocab, corpus = sys.argv[1:5]
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 5

with open(corpus, encoding="utf-8", newline="") as f:
    lines = f.read().split("\n")
if lines and lines[-1] == "":
    lines.pop()

# Special-looking added tokens count as control tokens, as in the GGUF (see
# tests/oracle/tokenizer_oracle.py), and are not parsed: the same ids on both sides.
with open(tokenizer_json, encoding="utf-8") as f:
    tj = json.load(f)
for t in tj.get("added_tokens", []):
    c = t["content"]
    if (c.startswith("<|") and c.endswith("|>")) or c in ("<pad>", "<mask>"):
        t["special"] = True
hf = Tokenizer.from_str(json.dumps(tj))
hf.encode_special_tokens = True
best, tokens = 1e300, 0
for _ in range(rounds):
    t0 = time.perf_counter()
    n = 0
    for line in lines:
        n += len(hf.encode(line, add_special_tokens=False).ids)
    best = min(best, time.perf_counter() - t0)
    tokens = n
hf_tps = tokens / best
# encode_batch on one thread: the per-call Python overhead is paid once per round.
best_batch = 1e300
for _ in range(rounds):
    t0 = time.perf_counter()
    hf.encode_batch(lines, add_special_tokens=False)
    best_batch = min(best_batch, time.perf_counter() - t0)
hf_batch_tps = tokens / best_batch

ours = json.loads(subprocess.run(["taskset", "-c", "0", bench, vocab, corpus, str(rounds)],
                                 check=True, capture_output=True, text=True).stdout)
print(json.dumps({"lines": len(lines), "hf_tokens": tokens, "hf_tokens_per_s": round(hf_tps),
                  "hf_batch_1thread_tokens_per_s": round(hf_batch_tps),
                  "tandem_tokens": ours["tokens"], "tandem_tokens_per_s": round(ours["tokens_per_s"]),
                  "ratio_tandem_over_hf": round(ours["tokens_per_s"] / hf_tps, 2),
                  "ratio_tandem_over_hf_batch": round(ours["tokens_per_s"] / hf_batch_tps, 2)}))
if ours["tokens"] != tokens:
    sys.exit("token counts differ: the two runs did not tokenize the same way")
