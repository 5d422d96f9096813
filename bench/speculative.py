#!/usr/bin/env python3
"""Speculative decoding speed: tandem run with and without guesses, beside llama.cpp's own
speculative tools (built beside the checkout), same files, same prompt, greedy, same threads.
Prints a Markdown table of decode tok/s, acceptance and the ratios; runs are alternated
(tandem plain, tandem spec, peer) for --rounds rounds so drift hits all alike.

  # a draft model (Qwen2.5-Coder-0.5B drafting for the 1.5B):
  bench/speculative.py --tandem build/release/tandem --mode draft -m 1.5B.gguf -md 0.5B.gguf \\
      --peer /path/llama.cpp/build/bin/llama-speculative-simple --prompt code -n 256
  # the same, with the draft's whole head and a longer draft alternated in every round:
  bench/speculative.py ... --mode draft ... --variants 0:4,auto:6
  # n-gram lookup on an editing task (repeat a source file with one function renamed):
  bench/speculative.py --tandem build/release/tandem --mode ngram -m 1.5B.gguf \\
      --peer /path/llama.cpp/build/bin/llama-lookup --prompt edit -n 512
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

CODE_PROMPT = ("Write a Python module implementing a binary search tree with insert, delete, search, "
               "in-order traversal and a function that checks the tree is balanced. Include docstrings.")


def edit_prompt(n_lines: int) -> str:
    # The first n_lines lines of a source file of this repository, repeated with one function renamed.
    src = (ROOT / "src" / "text" / "chat_output.cpp").read_text()
    lines = src.splitlines()[:n_lines]
    code = "\n".join(lines)
    return ("Here is a C++ file:\n```cpp\n" + code + "\n```\nRepeat the whole file exactly, but rename the "
            "function `parameter_type` to `declared_parameter_type` everywhere. Output only the code.")


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout, p.stderr


def tandem(args, prompt_file, spec, draft_max=None, head_prefix=None):
    cmd = [args.tandem, "run", "-m", args.model, "-f", prompt_file, "-n", str(args.n), "--temp", "0",
           "-t", str(args.threads), "-c", "8192", "--ignore-eos"]
    if spec:
        cmd += ["--draft-max", str(draft_max or args.draft_max)]
        cmd += ["-md", args.draft, "--draft-p-min", str(args.p_min)] if args.mode == "draft" else ["--spec", "ngram"]
    env = dict(os.environ)
    env.pop("TANDEM_DRAFT_HEAD_PREFIX", None)
    if head_prefix is not None:  # the draft's pruned head: N ids (0: the whole head); None: tandem's own rule
        env["TANDEM_DRAFT_HEAD_PREFIX"] = str(head_prefix)
    out, err = run(cmd, env)
    m = re.search(r"generation: (\d+) tokens in ([\d.]+) s", err)
    if not m:
        raise SystemExit("no generation line in tandem's output:\n" + err[-1500:])
    acc = re.search(r"accepted \(([\d.]+)%\), ([\d.]+) tokens per pass", err)
    return {"tok_s": int(m.group(1)) / float(m.group(2)), "accept": float(acc.group(1)) if acc else None,
            "per_pass": float(acc.group(2)) if acc else None, "text": out}


def peer(args, prompt_file):
    cmd = [args.peer, "-m", args.model, "-f", prompt_file, "-n", str(args.n), "--temp", "0", "-t", str(args.threads),
           "-c", "8192", "--ignore-eos"]
    if args.mode == "draft":
        cmd += ["--spec-type", "draft-simple", "-md", args.draft, "--spec-draft-n-max", str(args.draft_max),
                "--spec-draft-p-min", str(args.p_min)]
    else:
        # llama-lookup (the n-gram cache example) feeds the whole prompt as one batch
        cmd += ["--spec-draft-n-max", str(args.draft_max), "-b", "8192", "-ub", "512"]
    out, err = run(cmd)
    both = out + err
    m = re.search(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds", both)
    if not m:
        raise SystemExit("no 'decoded' line in the peer's output:\n" + both[-1500:])
    acc = re.search(r"accept\s+=\s+([\d.]+)%", both)
    return {"tok_s": int(m.group(1)) / float(m.group(2)), "accept": float(acc.group(1)) if acc else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--mode", choices=["draft", "ngram"], required=True)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-md", "--draft")
    ap.add_argument("--peer", help="llama.cpp's llama-speculative-simple (draft) or llama-lookup (ngram)")
    ap.add_argument("--prompt", choices=["code", "edit"], default="code")
    ap.add_argument("--edit-lines", type=int, default=300, help="lines of the source file in the edit prompt")
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--draft-max", type=int, default=16)
    ap.add_argument("--p-min", type=float, default=0.75, help="draft model: stop guessing below this probability")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", default="",
                    help="draft mode: more tandem rows alternated in every round, a comma list of HEAD:K (HEAD "
                         "'auto' or the draft head's pruned prefix in ids, 0 for the whole head; K the draft max), "
                         "e.g. 0:4,auto:6")
    args = ap.parse_args()
    if args.mode == "draft" and not args.draft:
        ap.error("--mode draft needs -md")
    variants = []
    for v in filter(None, args.variants.split(",")):
        head, _, k = v.partition(":")
        if args.mode != "draft" or not k.isdigit() or int(k) < 1 or not (head == "auto" or head.isdigit()):
            ap.error(f"--variants: '{v}' is not HEAD:K (HEAD 'auto' or a count of ids, K >= 1; draft mode only)")
        variants.append((v, None if head == "auto" else int(head), int(k)))
    text = chat(CODE_PROMPT if args.prompt == "code" else edit_prompt(args.edit_lines))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
        prompt_file = f.name
    rows = {"plain": [], "spec": [], "peer": []} | {name: [] for name, _, _ in variants}
    for _ in range(args.rounds):
        rows["plain"].append(tandem(args, prompt_file, False))
        rows["spec"].append(tandem(args, prompt_file, True))
        for name, head, k in variants:
            rows[name].append(tandem(args, prompt_file, True, draft_max=k, head_prefix=head))
        if args.peer:
            rows["peer"].append(peer(args, prompt_file))
    # Speculation must not change the output (greedy).
    ours = [r for name, v in rows.items() if name != "peer" for r in v]
    same = all(r["text"] == rows["plain"][0]["text"] for r in ours)
    med = {k: statistics.median(r["tok_s"] for r in v) for k, v in rows.items() if v}
    print(f"| {args.mode} | decode tok/s (median of {args.rounds}) | acceptance | tokens per pass |")
    print("|---|---:|---:|---:|")
    print(f"| tandem, no speculation | {med['plain']:.2f} | | |")
    s = rows["spec"][-1]
    print(f"| tandem, {args.mode} | {med['spec']:.2f} | {s['accept']:.1f}% | {s['per_pass']:.2f} |")
    for name, head, k in variants:
        v = rows[name][-1]
        what = "whole head" if head == 0 else "head as tandem picks" if head is None else f"head ids < {head}"
        print(f"| tandem, {args.mode}, {what}, k = {k} | {med[name]:.2f} | {v['accept']:.1f}% | {v['per_pass']:.2f} |")
    if rows["peer"]:
        p = rows["peer"][-1]
        acc = f"{p['accept']:.1f}%" if p["accept"] is not None else ""
        print(f"| llama.cpp {pathlib.Path(args.peer).name} | {med['peer']:.2f} | {acc} | |")
    print()
    print(f"tandem {args.mode} / tandem plain: {med['spec'] / med['plain']:.2f}x")
    for name, _, _ in variants:
        print(f"tandem {args.mode} {name} / tandem plain: {med[name] / med['plain']:.2f}x")
    if rows["peer"]:
        print(f"tandem {args.mode} / llama.cpp {args.mode}: {med['spec'] / med['peer']:.2f}x")
    print(f"outputs identical with and without speculation: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
