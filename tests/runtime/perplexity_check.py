#!/usr/bin/env python3
"""Perplexity of the real model on tests/data/perplexity/licenses.txt (~24k tokens, every
512-token chunk) must be within 1% of llama.cpp's llama-perplexity on the same file and
context (tests/data/perplexity/llama_reference.json records its figure and command).

usage: perplexity_check.py TANDEM_BIN DATA_DIR   (model from $TANDEM_TEST_MODEL)
Exit 77 (skipped, loudly) without the model unless TANDEM_REQUIRE_SHARED=1."""
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    tandem, data = sys.argv[1], pathlib.Path(sys.argv[2])
    ref = json.loads((data / "llama_reference.json").read_text())
    model = os.environ.get("TANDEM_TEST_MODEL", "")
    if not model or not os.path.isfile(model):
        if os.environ.get("TANDEM_REQUIRE_SHARED") == "1":
            sys.exit("perplexity_check: FAILED: real test model missing (TANDEM_TEST_MODEL)")
        print("SKIPPED LOUDLY: real test model not found; run tools/fetch_model.sh")
        sys.exit(77)
    if sha256(model) != ref["model_sha256"]:
        sys.exit(f"perplexity_check: FAILED: {model} is not the file the reference was measured on")
    r = subprocess.run([tandem, "perplexity", "-m", model, "-f", str(data / ref["text"]), "-c", str(ref["n_ctx"]),
                        "-t", "2"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"perplexity_check: FAILED: tandem exited {r.returncode}: {r.stderr[-2000:]}")
    m = re.search(r"PPL = ([0-9.]+) \+/- ([0-9.]+) \((\d+) chunks", r.stdout)
    if not m:
        sys.exit(f"perplexity_check: FAILED: no estimate in {r.stdout!r}")
    ppl, chunks = float(m.group(1)), int(m.group(3))
    if chunks != ref["chunks"]:
        sys.exit(f"perplexity_check: FAILED: {chunks} chunks scored, llama.cpp scored {ref['chunks']}")
    # llama.cpp's figure depends on its build (AVX2 vs AVX-512); tandem must be within 1% of each.
    figures = {"reference": ref["ppl"]}
    figures.update({k: v for k, v in ref.get("same_commit_other_builds", {}).items() if k != "note"})
    for build, figure in figures.items():
        rel = ppl / figure - 1
        print(f"tandem PPL {ppl:.4f} over {chunks} chunks; llama.cpp ({build}) {figure:.4f}; "
              f"difference {100 * rel:+.3f}%")
        if abs(rel) > 0.01:
            sys.exit(f"perplexity_check: FAILED: more than 1% from llama.cpp ({build})")


if __name__ == "__main__":
    main()
