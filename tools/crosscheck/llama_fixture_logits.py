#!/usr/bin/env python3
"""Records llama.cpp's logits on the quantized fixture models (tests/fixtures), as the
oracle for tandem's fast path: llama.cpp quantizes activations to 8 bits for quantized
weights exactly as tandem's integer kernels do, so the two should agree closely, while
both differ from the f32-activation transformers references by the same rounding.

Uses the longest sequence of each variant (it spans several DeltaNet chunks). Writes
tests/fixtures/<family>/llama-<variant>.f32 ([n][vocab] f32) and records the file, its
sha256, the sequence index and the llama.cpp commit in manifest.json.

usage: llama_fixture_logits.py LLAMA_LOGITS_BINARY --commit SHA
(build LLAMA_LOGITS_BINARY from tools/crosscheck/llama_logits.cpp, see its header)"""
import argparse
import hashlib
import json
import pathlib
import subprocess

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("driver")
    ap.add_argument("--commit", required=True)
    args = ap.parse_args()
    manifest_path = FIXTURES / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for family, f in manifest["families"].items():
        for variant, v in f["variants"].items():
            if variant == "f32":
                continue
            index = max(range(len(v["sequences"])), key=lambda i: len(v["sequences"][i]["tokens"]))
            tokens = v["sequences"][index]["tokens"]
            out = FIXTURES / family / f"llama-{variant}.f32"
            subprocess.run([args.driver, str(FIXTURES / v["gguf"]), str(out), "0", *map(str, tokens)],
                           check=True, capture_output=True)
            data = out.read_bytes()
            assert len(data) == 4 * len(tokens) * f["vocab_size"], (family, variant, len(data))
            v["llama_reference"] = {"file": f"{family}/llama-{variant}.f32",
                                    "sha256": hashlib.sha256(data).hexdigest(),
                                    "sequence": index, "llama_cpp_commit": args.commit,
                                    "kv_cache": "f32", "threads": 2}
            print(family, variant, len(tokens), "tokens")
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
