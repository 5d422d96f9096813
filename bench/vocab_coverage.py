#!/usr/bin/env python3
"""How much of a text a pruned draft vocabulary covers (speculative.h, PrunedVocabulary).

A drafter with a pruned head guesses only among the ids below --prefix and the runs of
--run ids holding an id seen earlier in the context; a guess is lost to pruning only where
the model's next token lies outside that subset. For each text, the second half's tokens
are checked against the subset built from everything before them (the first half stands
in for the prompt). Prints a Markdown table.

  bench/vocab_coverage.py --tokenizer ../shared/data/tokenizers/qwen3/tokenizer.json \\
      src/runtime/speculative.cpp docs/ARCHITECTURE.md /usr/share/gnupg/help.zh_CN.txt

Needs the `tokenizers` package (PyPI).
"""
import argparse
import sys


def coverage(ids, prefix, run):
    half = len(ids) // 2
    seen = {i // run for i in ids[:half]}
    inside = plain = 0
    for i in ids[half:]:
        inside += i < prefix or i // run in seen
        plain += i < prefix
        seen.add(i // run)
    rest = max(1, len(ids) - half)
    return inside / rest, plain / rest


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="a Hugging Face tokenizer.json")
    ap.add_argument("--prefix", type=int, default=32768, help="ids always computed (kDraftHeadPrefix)")
    ap.add_argument("--run", type=int, default=16, help="ids per run (kHeadSubsetRows)")
    ap.add_argument("--max-chars", type=int, default=80000, help="characters read from each text")
    ap.add_argument("texts", nargs="+")
    args = ap.parse_args()
    try:
        from tokenizers import Tokenizer
    except ImportError:
        sys.exit("vocab_coverage.py: needs the 'tokenizers' package (pip install tokenizers)")
    try:
        tok = Tokenizer.from_file(args.tokenizer)
    except Exception as e:  # the library raises a bare Exception for a missing or bad file
        sys.exit(f"vocab_coverage.py: cannot load the tokenizer {args.tokenizer}: {e}")
    print("| text | tokens | inside prefix + seen runs | inside prefix alone |")
    print("|---|---:|---:|---:|")
    for path in args.texts:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(args.max_chars)
        except OSError as e:
            sys.exit(f"vocab_coverage.py: cannot read {path}: {e.strerror}")
        ids = tok.encode(text).ids
        if len(ids) < 2:
            sys.exit(f"vocab_coverage.py: {path} holds fewer than 2 tokens")
        both, alone = coverage(ids, args.prefix, args.run)
        print(f"| {path} | {len(ids)} | {both:.3f} | {alone:.3f} |")


if __name__ == "__main__":
    main()
