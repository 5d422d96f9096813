#!/usr/bin/env python3
"""`tandem bench` end to end on the tiny fixtures: llama-bench's JSON fields and values
(one object per test, one sample per repetition), jsonl/csv/markdown shapes, the -ub/-ctk
aliases, the speculative rows (--spec), and bad input (unknown flag, bad numbers, missing model, unsupported KV type, a
test longer than the context) exiting non-zero with a message that names the problem.

Usage: bench_cli_check.py TANDEM FIXTURES_DIR
"""
import csv
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf

tandem, fixtures = sys.argv[1:3]
qwen2 = f"{fixtures}/qwen2/model-q8_0.gguf"
qwen35 = f"{fixtures}/qwen35/model-q4_k_m.gguf"
failures = 0


def with_small_heads(src: str, out: Path) -> str:
    """The qwen2 fixture (H 4 x d 64 = D 256) relabelled as 16 heads of 16 (KV 8 x 16): the
    same tensors, a head size that no 32-element KV cache block fits."""
    reader = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(out, arch="qwen2")
    relabel = {"qwen2.attention.head_count": 16, "qwen2.attention.head_count_kv": 8}
    for f in reader.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(f.name, relabel.get(f.name, f.contents()), f.types[0], sub_type=sub)
    for t in reader.tensors:
        w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in reader.tensors:
        w.write_tensor_data(t.data)
    w.close()
    return str(out)


def run(*args):
    return subprocess.run([tandem, "bench", *args], capture_output=True, text=True)


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


# JSON: one pp and one tg object, llama-bench's fields.
r = run("-m", qwen2, "-p", "16", "-n", "4", "-r", "2", "-t", "1", "-o", "json")
check(r.returncode == 0, f"json run exit {r.returncode}: {r.stderr}")
tests = json.loads(r.stdout) if r.returncode == 0 else []
check(len(tests) == 2, f"expected 2 tests, got {len(tests)}")
fields = ["build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
          "model_size", "model_n_params", "n_batch", "n_ubatch", "n_threads", "type_k", "type_v", "n_prompt",
          "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns", "samples_ts"]
for t, (n_prompt, n_gen) in zip(tests, [(16, 0), (0, 4)]):
    check(list(t) == fields, f"field list {list(t)}")
    check((t["n_prompt"], t["n_gen"], t["n_depth"]) == (n_prompt, n_gen, 0), f"sizes {t}")
    check(len(t["samples_ns"]) == 2 and len(t["samples_ts"]) == 2, "2 samples per test")
    check(t["avg_ts"] > 0 and all(x > 0 for x in t["samples_ts"]), "positive speeds")
    check(abs(t["avg_ts"] - sum(t["samples_ts"]) / 2) <= 1e-6 * t["avg_ts"], "avg_ts is the mean of samples_ts")
    for ns, ts in zip(t["samples_ns"], t["samples_ts"]):
        check(abs(ts - 1e9 * (n_prompt + n_gen) / ns) <= 1e-6 * ts, "samples_ts = tokens / samples_ns")
    check(t["n_threads"] == 1 and t["n_ubatch"] == 512, "threads and default ubatch")
    check(t["type_k"] == "f16" and t["type_v"] == "f16" and t["backends"] == "CPU", "kv types (default f16), backend")
    check(t["model_type"].startswith("qwen2 ") and t["model_type"].endswith(" Q8_0"), t["model_type"])
    check(t["model_filename"] == qwen2 and t["model_size"] > 0 and t["model_n_params"] > 0, "model fields")

# jsonl with depth, two models (one hybrid), the -ub alias, a comma list and a range.
r = run("-m", f"{qwen2},{qwen35}", "-p", "4,8", "-n", "2-3", "-d", "5", "-r", "1", "-t", "1", "-ub", "3",
        "-ctk", "f32", "-o", "jsonl", "--no-warmup")
check(r.returncode == 0, f"jsonl run exit {r.returncode}: {r.stderr}")
lines = [json.loads(line) for line in r.stdout.splitlines()] if r.returncode == 0 else []
check([(t["n_prompt"], t["n_gen"]) for t in lines] == [(4, 0), (8, 0), (0, 2), (0, 3)] * 2, "jsonl tests")
check(all(t["n_depth"] == 5 and t["n_ubatch"] == 3 and len(t["samples_ns"]) == 1 for t in lines), "jsonl fields")
check(len(lines) == 8 and lines[4]["model_type"].startswith("qwen35 "), "second model")

# csv: header plus one row per test.
r = run("-m", qwen2, "-p", "8", "-n", "2", "-r", "1", "-t", "1", "-o", "csv")
rows = list(csv.DictReader(io.StringIO(r.stdout))) if r.returncode == 0 else []
check(r.returncode == 0 and len(rows) == 2 and rows[0]["n_prompt"] == "8" and rows[1]["n_gen"] == "2", "csv")

# markdown: llama-bench's columns and test names.
r = run("-m", qwen2, "-p", "8", "-n", "2", "-d", "4", "-r", "2", "-t", "1")
check(r.returncode == 0, f"md run exit {r.returncode}: {r.stderr}")
out = r.stdout.splitlines()
check(len(out) >= 4 and [c.strip() for c in out[0].strip("|").split("|")] ==
      ["model", "size", "params", "backend", "threads", "test", "t/s"], f"md header {out[:1]}")
check(any("pp8 @ d4" in line for line in out) and any("tg2 @ d4" in line for line in out), "md test names")
check(any(line.startswith("build: ") for line in out), "md build line")

# The fixtures' heads (64/128) fit every cache type; a relabelled copy with 16-dim heads is a
# working model (f16 cache) that a q8_0 cache must refuse by name.
scratch = tempfile.TemporaryDirectory()
qwen2_d16 = with_small_heads(qwen2, Path(scratch.name) / "qwen2-d16.gguf")
r = run("-m", qwen2_d16, "-p", "8", "-n", "2", "-r", "1", "-t", "1", "-ctv", "f16")
check(r.returncode == 0, f"16-dim heads with an f16 cache: exit {r.returncode}, {r.stderr!r}")

# Bad input: non-zero exit and a message naming the problem.
for args, message in [
    (["-m", qwen2, "--bogus"], "--bogus"),
    (["-m", qwen2, "-r", "0"], "-r must be >= 1"),
    (["-m", qwen2, "-t", "0"], "-t must be >= 1"),
    (["-m", qwen2, "-p", "-5"], "-p must be >= 0"),
    (["-m", qwen2, "-n", "x"], "-n: 'x' is not a number"),
    (["-m", f"{fixtures}/no-such-model.gguf"], "no-such-model.gguf"),
    (["-m", qwen2, "-ctk", "q9_0"], "-ctk: unknown KV cache type 'q9_0'"),
    (["-m", qwen2_d16, "-ctv", "q8_0"], "KV cache type Q8_0 needs a head size that is a multiple of 32"),
    (["-m", qwen2, "-p", "4000", "-d", "1000"], "exceed the model's context"),
    (["-m", qwen2, "-o", "xml"], "unknown output format"),
]:
    r = run(*args)
    check(r.returncode != 0, f"{args}: exit 0")
    check(message in r.stderr, f"{args}: stderr {r.stderr!r} lacks {message!r}")
    check(r.stdout == "", f"{args}: printed {r.stdout!r}")

# Placement sweeps: one engine per --n-cpu-moe / --vram-budget value, each value in its
# results (fields added only when swept); without a GPU the tests run on the CPU.
r = run("-m", qwen35, "-p", "8", "-n", "0", "-r", "1", "-t", "1", "--n-cpu-moe", "0,2", "--vram-budget", "1GiB,2GiB",
        "-o", "json")
check(r.returncode == 0, f"placement sweep exit {r.returncode}: {r.stderr}")
if r.returncode == 0:
    swept = json.loads(r.stdout)
    check([(t["n_cpu_moe"], t["vram_budget"]) for t in swept] == [(0, "1GiB"), (0, "2GiB"), (2, "1GiB"), (2, "2GiB")],
          f"placement sweep rows {swept}")
r = run("-m", qwen35, "-p", "8", "-n", "0", "-r", "1", "-t", "1", "--n-cpu-moe", "0,1")
check(r.returncode == 0 and "n_cpu_moe" in r.stdout.splitlines()[0], f"markdown sweep column: {r.stdout}")
r = run("-m", qwen35, "-p", "8", "-n", "0", "--vram-budget", "12parsecs")
check(r.returncode != 0 and "12parsecs" in r.stderr, f"bad --vram-budget list: {r.stderr}")

# Speculative rows: after each tg test, the same count decoded greedily after real text, one
# token per pass ("greedy") and speculating (the method), with the guesses counted.
qwen35moe = f"{fixtures}/qwen35moe/model-q8_0.gguf"
for args, method in [(["-m", qwen35moe, "--spec", "mtp"], "mtp"),
                     (["-m", qwen2, "-md", f"{fixtures}/qwen2/model-q4_0.gguf", "--draft-max", "3", "--draft-p-min", "0"], "draft")]:
    r = run(*args, "-p", "0", "-n", "12", "-r", "2", "-t", "1", "-o", "json")
    check(r.returncode == 0, f"{args}: exit {r.returncode}: {r.stderr}")
    rows = json.loads(r.stdout) if r.returncode == 0 else []
    check([t.get("spec") for t in rows] == [None, "greedy", method], f"{args}: rows {[t.get('spec') for t in rows]}")
    if len(rows) == 3:
        greedy, spec = rows[1], rows[2]
        check(greedy["spec_drafted"] == 0 and greedy["spec_verify_steps"] == 0, f"greedy row guessed: {greedy}")
        check(spec["n_gen"] == 12 and len(spec["samples_ns"]) == 2, f"speculative row sizes: {spec}")
        # Two repetitions of 12 tokens: each verify pass gives its kept guesses plus one.
        check(0 < spec["spec_verify_steps"] <= 2 * 11 and spec["spec_drafted"] > 0, f"speculative counts: {spec}")
        check(spec["spec_accepted"] <= spec["spec_drafted"], f"kept more than guessed: {spec}")
        if method == "draft":  # a q4_0 copy of the same model guesses most tokens
            check(spec["spec_accepted"] > spec["spec_drafted"] / 2, f"draft acceptance: {spec}")
r = run("-m", qwen35moe, "--spec", "mtp", "-p", "0", "-n", "4", "-r", "1", "-t", "1")
check(r.returncode == 0 and any("tg4 mtp (" in line and "% kept" in line for line in r.stdout.splitlines()),
      f"markdown speculative row: {r.stdout}")
for args, message in [(["-m", qwen2, "--spec", "mtp"], "no MTP"),
                      (["-m", qwen2, "--spec", "draft"], "-md"),
                      (["-m", qwen2, "--spec", "ngram", "--spec-prompt", f"{fixtures}/no-such-prompt.txt"],
                       "no-such-prompt.txt")]:
    r = run(*args, "-p", "0", "-n", "4", "-r", "1", "-t", "1")
    check(r.returncode != 0 and message in r.stderr, f"{args}: exit {r.returncode}, stderr {r.stderr!r}")

print("bench_cli_check:", "FAILED" if failures else "ok")
sys.exit(1 if failures else 0)
