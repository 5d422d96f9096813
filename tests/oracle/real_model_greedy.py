#!/usr/bin/env python3
"""Greedy generation on the real model must equal llama.cpp's, text for text
(tests/data/llama_reference/greedy.json, recorded by tools/crosscheck/llama_greedy_reference.py).

usage: real_model_greedy.py TANDEM_BINARY MODEL.gguf REFERENCE.json"""
import hashlib
import json
import os
import subprocess
import sys


def main():
    binary, model, reference = sys.argv[1:4]
    if not model or not os.path.exists(model):
        print("SKIPPED LOUDLY: real test model missing (tools/fetch_model.sh)")
        sys.exit(1 if os.environ.get("TANDEM_REQUIRE_SHARED") == "1" else 0)
    ref = json.load(open(reference))
    sha = hashlib.sha256(open(model, "rb").read()).hexdigest()
    if sha != ref["model_sha256"]:
        sys.exit(f"model sha256 {sha} differs from the reference's {ref['model_sha256']}")
    for i, case in enumerate(ref["cases"]):
        out = subprocess.run([binary, "run", "-m", model, "-p", case["prompt"], "-n", str(ref["n_predict"]),
                              "--temp", "0"], capture_output=True)
        if out.returncode != 0:
            sys.exit(f"case {i}: tandem run failed: {out.stderr.decode(errors='replace')}")
        ours = out.stdout.decode("utf-8")
        if ours.endswith("\n"):
            ours = ours[:-1]
        if ours != case["generated"]:
            common = 0
            while common < min(len(ours), len(case["generated"])) and ours[common] == case["generated"][common]:
                common += 1
            sys.exit(f"case {i} differs at character {common}:\n  llama.cpp: {case['generated'][common:common+80]!r}\n"
                     f"  tandem:    {ours[common:common+80]!r}")
        print(f"ok case {i}: {len(ours)} characters identical")


if __name__ == "__main__":
    main()
