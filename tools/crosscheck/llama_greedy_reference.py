#!/usr/bin/env python3
"""Records llama.cpp's greedy continuations of a few chat prompts on the default real model,
as reference data for tests/model/real_model_greedy_test.cpp.

llama.cpp is built by the developer beside the checkout (never in it, never committed); pass
the path of its stock `llama-simple` (greedy sampling, prompt tokenized with special tokens).
With --llama-completion, the same continuations are also recorded from llama.cpp with flash
attention off (`generated_fa_off`): how far llama.cpp agrees with itself across its two
attention paths is the yardstick the test holds tandem to.

usage: llama_greedy_reference.py LLAMA_SIMPLE MODEL.gguf OUT.json [--n 64] [--commit SHA]
                                 [--llama-completion LLAMA_COMPLETION]"""
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


def fa_off(llama_completion, model, prompt, n):
    """llama.cpp's greedy continuation with flash attention off, up to end of generation."""
    out = subprocess.run([llama_completion, "-m", model, "-n", str(n), "--temp", "0", "-fa", "off", "-sp",
                          "-no-cnv", "--no-warmup", "-p", prompt],
                         capture_output=True, check=True).stdout.decode("utf-8")
    if not out.startswith(prompt):
        raise SystemExit(f"unexpected llama-completion output: {out[:200]!r}")
    text = out[len(prompt):]
    for end in ("<|im_end|>", "<|endoftext|>", " [end of text]"):
        text = text.split(end, 1)[0]
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("llama_simple")
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--llama-completion", help="llama-completion binary: also record -fa off")
    args = ap.parse_args()
    sha = hashlib.sha256(open(args.model, "rb").read()).hexdigest()
    cases = []
    for user in PROMPTS:
        prompt = chat(user)
        out = subprocess.run([args.llama_simple, "-m", args.model, "-n", str(args.n), prompt],
                             capture_output=True, check=True).stdout.decode("utf-8")
        if not out.startswith(prompt) or not out.endswith("\n"):
            raise SystemExit(f"unexpected llama-simple output for {user!r}: {out[:200]!r}")
        case = {"prompt": prompt, "generated": out[len(prompt):-1]}
        if args.llama_completion:
            case["generated_fa_off"] = fa_off(args.llama_completion, args.model, prompt, args.n)
        cases.append(case)
    json.dump({"generator": "llama.cpp llama-simple (greedy), commit " + args.commit,
               "model_sha256": sha, "n_predict": args.n, "cases": cases},
              open(args.out, "w"), ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
