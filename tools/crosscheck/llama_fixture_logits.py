#!/usr/bin/env python3
"""Records llama.cpp's logits on the quantized fixture models (tests/fixtures), as the
oracle for tandem's fast path: llama.cpp quantizes activations to 8 bits for quantized
weights exactly as tandem's integer kernels do, so the two should agree closely, while
both differ from the f32-activation transformers references by the same rounding.

Uses the longest sequence of each variant (it spans several DeltaNet chunks). Writes
tests/fixtures/<family>/llama-<variant>.f32 ([n][vocab] f32) and records the file, its
sha256, the sequence index and the llama.cpp commit in manifest.json.

With --kv-caches it records instead llama.cpp's logits with each KV cache type of
KV_PAIRS (-ctk/-ctv) on the f32 fixtures of KV_FAMILIES, the oracle of
tests/model/kv_cache_test.cpp: the weights are f32, so both run their float matmuls and
what is left to differ is how each stores and reads K and V; the f16/f16 run is the
baseline the test's bounds are measured from. Writes
tests/fixtures/<family>/llama-kv-<k>-<v>.f32 and records them under
variants.f32.llama_kv_references["<k>/<v>"].

With --mtp LLAMA_MTP_BINARY it records instead llama.cpp's MTP (NextN) draft block on the
f32 fixtures of families with one (qwen35moe): the trunk's h rows and the block's logits at
every position of the longest sequence, as llama.cpp's speculative driver pairs them (see
llama_mtp.cpp). Writes tests/fixtures/<family>/llama-mtp.h.f32 and llama-mtp.mtp.f32 and
records them under variants.f32.llama_mtp_reference; the oracle of
tests/model/fixture_logits_test.cpp's FixtureMtp.DraftLogitsMatchLlamaCpp.

With --only FAMILY... only those families' files and manifest records are rewritten (the
others keep theirs), for when some fixtures were regenerated.

usage: llama_fixture_logits.py LLAMA_LOGITS_BINARY --commit SHA [--only FAMILY...] [--build NOTE]
                               [--kv-caches | --mtp LLAMA_MTP_BINARY]
(build the binaries from tools/crosscheck/llama_logits.cpp and llama_mtp.cpp, see their headers)"""
import argparse
import hashlib
import json
import pathlib
import subprocess

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"
# qwen3: 128-dim heads (four blocks of every quantized type per head); qwen35moe: 64-dim heads.
KV_FAMILIES = ["qwen3", "qwen35moe"]
KV_PAIRS = [("f16", "f16"), ("bf16", "bf16"), ("q8_0", "q8_0"), ("q8_0", "f16"), ("q4_0", "q4_0"),
            ("q4_1", "q4_1"), ("q5_0", "q5_0"), ("q5_1", "q5_1")]


def record(args, family, vocab_size, variant, name, cache_args=()):
    """Runs the driver on the variant's longest sequence into tests/fixtures/NAME; returns
    the manifest record of the file."""
    index = max(range(len(variant["sequences"])), key=lambda i: len(variant["sequences"][i]["tokens"]))
    tokens = variant["sequences"][index]["tokens"]
    out = FIXTURES / name
    subprocess.run([args.driver, *cache_args, str(FIXTURES / variant["gguf"]), str(out), "0", *map(str, tokens)],
                   check=True, capture_output=True)
    data = out.read_bytes()
    assert len(data) == 4 * len(tokens) * vocab_size, (name, len(data))
    print(name, len(tokens), "tokens")
    rec = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "sequence": index,
           "llama_cpp_commit": args.commit, "kv_cache": "f32", "threads": 2}
    if args.build:
        rec["llama_cpp_build"] = args.build
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("driver")
    ap.add_argument("--commit", required=True)
    ap.add_argument("--kv-caches", action="store_true")
    ap.add_argument("--mtp", metavar="LLAMA_MTP_BINARY")
    ap.add_argument("--only", nargs="+", metavar="FAMILY")
    ap.add_argument("--build", metavar="NOTE", help="how the peer was built (its CPU paths), recorded with each file")
    args = ap.parse_args()
    manifest_path = FIXTURES / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for family, f in manifest["families"].items():
        if args.only and family not in args.only:
            continue
        if args.mtp:
            if not any(note.startswith("MTP block") for note in f.get("notes", [])):
                continue
            v = f["variants"]["f32"]
            index = max(range(len(v["sequences"])), key=lambda i: len(v["sequences"][i]["tokens"]))
            tokens = v["sequences"][index]["tokens"]
            prefix = f"{family}/llama-mtp"
            subprocess.run([args.mtp, str(FIXTURES / v["gguf"]), str(FIXTURES / prefix), *map(str, tokens)],
                           check=True, capture_output=True)
            ref = {"sequence": index, "llama_cpp_commit": args.commit, "kv_cache": "f32", "threads": 2,
                   "layout": "position p: token x_p with the trunk's h_{p-1} (zeros at p = 0)"}
            for part in ("h", "mtp"):
                data = (FIXTURES / f"{prefix}.{part}.f32").read_bytes()
                ref[part] = {"file": f"{prefix}.{part}.f32", "sha256": hashlib.sha256(data).hexdigest()}
            v["llama_mtp_reference"] = ref
            print(prefix, len(tokens), "tokens")
            continue
        if args.kv_caches:
            if family not in KV_FAMILIES:
                continue
            v = f["variants"]["f32"]
            refs = {}
            for k, vt in KV_PAIRS:
                ref = record(args, family, f["vocab_size"], v, f"{family}/llama-kv-{k}-{vt}.f32", ("-ctk", k, "-ctv", vt))
                refs[f"{k}/{vt}"] = {**ref, "kv_cache": f"{k}/{vt}", "flash_attn": "auto"}
            v["llama_kv_references"] = refs
            continue
        for variant, v in f["variants"].items():
            if variant != "f32":
                v["llama_reference"] = record(args, family, f["vocab_size"], v, f"{family}/llama-{variant}.f32")
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
