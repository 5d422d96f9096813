#!/usr/bin/env python3
"""Records llama.cpp's greedy continuations of a few chat prompts on the default real model,
as reference data for tests/model/real_model_greedy_test.cpp.

llama.cpp's greedy text is not one thing: the same commit built for AVX2 and for AVX-512,
or run with flash attention on and off, takes different tokens wherever two candidates
are close, because every 8-bit re-quantization of activations turns an ulp of difference
upstream into a whole quantization step. So this records several llama.cpp
configurations ("runs"), each through tools/crosscheck/llama_greedy.cpp built against a
llama.cpp built beside the checkout (never in it, never committed):
  - for every run: its free-running greedy tokens and text, and its TOP_K best logits at
    every step;
  - for every reference run R and every other run X: X teacher-forced on R's tokens, with
    X's logits at R's TOP_K ids and X's own argmax at every step.
The test holds tandem to each reference run and uses the other runs as the yardstick of
how far llama.cpp agrees with itself.

usage: llama_greedy_reference.py MODEL.gguf OUT.json --commit SHA
           --run NAME DRIVER FLASH_ATTN "BUILD DESCRIPTION" [--run ...]
           --reference NAME [--reference ...] [--n 64] [--top-k 8]"""
import argparse
import hashlib
import json
import subprocess

PROMPTS = [
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain in two sentences what a hash table is.",
    "Translate to French: The weather is nice today and we are going to the beach.",
    "Write a SQL query that returns the ten most recent orders from a table named orders.",
    "List three prime numbers greater than 100 and explain how you checked them.",
]

# A run's forced logits are looked up among its own best FORCED_TOP_K; the reference's
# TOP_K ids must all be among them (checked).
FORCED_TOP_K = 64


def chat(user):
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def drive(driver, model, n, top_k, flash_attn, prompt, force=None):
    cmd = [driver, model, str(n), str(top_k), flash_attn, prompt]
    if force is not None:
        cmd += ["--force", ",".join(map(str, force))]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return json.loads(out.decode("utf-8"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--commit", required=True)
    ap.add_argument("--run", nargs=4, action="append", required=True,
                    metavar=("NAME", "DRIVER", "FLASH_ATTN", "BUILD"))
    ap.add_argument("--reference", action="append", required=True)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=8)
    args = ap.parse_args()
    runs = {name: {"driver": driver, "flash_attn": fa, "build": build} for name, driver, fa, build in args.run}
    for r in args.reference:
        if r not in runs:
            raise SystemExit(f"--reference {r}: no --run of that name")
    sha = hashlib.sha256(open(args.model, "rb").read()).hexdigest()
    cases = []
    for user in PROMPTS:
        prompt = chat(user)
        case = {"prompt": prompt, "greedy": {}, "forced": {}}
        for name, run in runs.items():
            g = drive(run["driver"], args.model, args.n, args.top_k, run["flash_attn"], prompt)
            case.setdefault("prompt_tokens", g["prompt_tokens"])
            if g["prompt_tokens"] != case["prompt_tokens"]:
                raise SystemExit(f"run {name} tokenizes {user!r} differently")
            case["greedy"][name] = {"tokens": g["tokens"], "text": g["text"],
                                    "top_ids": [[i for i, _ in s] for s in g["top"]],
                                    "top_logits": [[round(v, 5) for _, v in s] for s in g["top"]]}
        for ref in args.reference:
            r = case["greedy"][ref]
            case["forced"][ref] = {}
            for name, run in runs.items():
                if name == ref:
                    continue
                f = drive(run["driver"], args.model, args.n, FORCED_TOP_K, run["flash_attn"], prompt, r["tokens"])
                if len(f["top"]) != len(r["top_ids"]):
                    raise SystemExit(f"run {name} forced on {ref}: {len(f['top'])} steps, not {len(r['top_ids'])}")
                logits, argmax = [], []
                for step, (ids, top) in enumerate(zip(r["top_ids"], f["top"])):
                    found = dict((i, v) for i, v in top)
                    missing = [i for i in ids if i not in found]
                    if missing:
                        raise SystemExit(f"run {name} forced on {ref}, step {step}: ids {missing} not in its "
                                         f"best {FORCED_TOP_K}")
                    logits.append([round(found[i], 5) for i in ids])
                    argmax.append(top[0][0])
                case["forced"][ref][name] = {"logits": logits, "argmax": argmax}
        cases.append(case)
        print(f"{user[:40]!r}: " + ", ".join(f"{n} {len(case['greedy'][n]['tokens'])} tokens" for n in runs))
    json.dump({"generator": "tools/crosscheck/llama_greedy.cpp (greedy as llama-simple, f16 KV cache) against "
                            "llama.cpp commit " + args.commit,
               "model_sha256": sha, "n_predict": args.n, "top_k": args.top_k,
               "runs": {n: {"build": r["build"], "flash_attn": r["flash_attn"]} for n, r in runs.items()},
               "references": args.reference, "cases": cases},
              open(args.out, "w"), ensure_ascii=False, indent=None, separators=(",", ":"))


if __name__ == "__main__":
    main()
