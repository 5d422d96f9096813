#!/usr/bin/env python3
"""Records llama.cpp's greedy continuations of a few chat prompts on the default real model,
as reference data for tests/model/real_model_greedy_test.cpp.

llama.cpp is built by the developer beside the checkout (never in it, never committed); pass
the path of its stock `llama-simple` (greedy sampling, prompt tokenized with special tokens).

usage: llama_greedy_reference.py LLAMA_SIMPLE MODEL.gguf OUT.json [--n 64] [--commit SHA]"""
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


def chat(user):
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("llama_simple")
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--commit", default="unknown")
    args = ap.parse_args()
    sha = hashlib.sha256(open(args.model, "rb").read()).hexdigest()
    cases = []
    for user in PROMPTS:
        prompt = chat(user)
        out = subprocess.run([args.llama_simple, "-m", args.model, "-n", str(args.n), prompt],
                             capture_output=True, check=True).stdout.decode("utf-8")
        if not out.startswith(prompt) or not out.endswith("\n"):
            raise SystemExit(f"unexpected llama-simple output for {user!r}: {out[:200]!r}")
        cases.append({"prompt": prompt, "generated": out[len(prompt):-1]})
    json.dump({"generator": "llama.cpp llama-simple (greedy), commit " + args.commit,
               "model_sha256": sha, "n_predict": args.n, "cases": cases},
              open(args.out, "w"), ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
