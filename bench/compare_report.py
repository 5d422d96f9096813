#!/usr/bin/env python3
"""Pairs the tests of two llama-bench JSON outputs (tandem's and a peer's) and prints one
markdown table: model | test | tandem t/s | peer t/s | ratio (tandem/peer). Tests are
matched on model file, prompt/gen/depth sizes and threads. Stdlib only.

Usage: compare_report.py [--peer-name NAME] TANDEM.json PEER.json
"""
import argparse
import json
import os
import platform


def test_name(t):
    name = f"pp{t['n_prompt']}" if t["n_prompt"] > 0 and t["n_gen"] == 0 else \
        f"tg{t['n_gen']}" if t["n_prompt"] == 0 else f"pp{t['n_prompt']}+tg{t['n_gen']}"
    return name + (f" @ d{t['n_depth']}" if t.get("n_depth", 0) > 0 else "")


def key(t):
    return (os.path.realpath(t["model_filename"]), t["n_prompt"], t["n_gen"], t.get("n_depth", 0), t["n_threads"])


def speed(t):
    return f"{t['avg_ts']:.2f} ± {t['stddev_ts']:.2f}" if t else "—"


def distinct(tests, field):
    return ", ".join(sorted({str(t.get(field, "?")) for t in tests})) or "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-name", default="llama.cpp")
    ap.add_argument("tandem_json")
    ap.add_argument("peer_json")
    a = ap.parse_args()
    with open(a.tandem_json) as f:
        ours = json.load(f)
    with open(a.peer_json) as f:
        theirs = json.load(f)
    peer = {key(t): t for t in theirs}

    cpu = distinct(ours + theirs, "cpu_info")
    print(f"CPU: {cpu} ({os.cpu_count()} logical CPUs, {platform.machine()})")
    print(f"tandem: commit {distinct(ours, 'build_commit')}; KV cache {distinct(ours, 'type_k')}/"
          f"{distinct(ours, 'type_v')}, n_ubatch {distinct(ours, 'n_ubatch')}")
    print(f"{a.peer_name}: commit {distinct(theirs, 'build_commit')} (build {distinct(theirs, 'build_number')}); "
          f"KV cache {distinct(theirs, 'type_k')}/{distinct(theirs, 'type_v')}, n_ubatch "
          f"{distinct(theirs, 'n_ubatch')}, backends {distinct(theirs, 'backends')}")
    print(f"threads: {distinct(ours + theirs, 'n_threads')}; repetitions: "
          f"{distinct([{'r': len(t['samples_ns'])} for t in ours + theirs], 'r')}")
    print()
    print(f"| model | test | tandem t/s | {a.peer_name} t/s | ratio |")
    print("|---|---|---:|---:|---:|")
    seen = set()
    for t in ours:
        other = peer.get(key(t))
        seen.add(key(t))
        ratio = f"{t['avg_ts'] / other['avg_ts']:.2f}x" if other and other["avg_ts"] > 0 else "—"
        print(f"| {os.path.basename(t['model_filename'])} | {test_name(t)} | {speed(t)} | {speed(other)} | {ratio} |")
    for t in theirs:  # tests only the peer ran
        if key(t) not in seen:
            print(f"| {os.path.basename(t['model_filename'])} | {test_name(t)} | — | {speed(t)} | — |")


if __name__ == "__main__":
    main()
