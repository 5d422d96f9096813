#!/usr/bin/env python3
"""`tandem fit` end to end: the full Qwen3.5-35B-A3B preset at a 12 GiB budget (JSON: budget
kept, every-token weights on the GPU, experts split by whole layers, a tok/s prediction),
the qwen35moe fixture GGUF (text and JSON, its MTP block), llama.cpp's override spellings
(-ngl, -cmoe, -ncmoe, -ot), and bad input exiting non-zero with a message that names the
problem.

Usage: fit_cli_check.py TANDEM FIXTURES_DIR
"""
import json
import subprocess
import sys

tandem, fixtures = sys.argv[1:3]
moe = f"{fixtures}/qwen35moe/model-q4_k_m.gguf"
GiB = 1 << 30
failures = 0


def run(*args):
    return subprocess.run([tandem, "fit", *args], capture_output=True, text=True)


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def fit_json(*args):
    r = run(*args, "--json")
    check(r.returncode == 0, f"{args}: exit {r.returncode}: {r.stderr}")
    return json.loads(r.stdout) if r.returncode == 0 else None


def groups(j, what):
    return [g for g in j["groups"] if g["what"] == what]


preset = ["--preset", "qwen35moe-35b-a3b", "--vram-budget", "12GiB", "--ram", "64GiB"]

# The command as written (bandwidths measured where a device exists; without a GPU
# there is no GPU bandwidth, so tok/s is absent and a note says how to get it).
j = fit_json("--preset", "qwen35moe-35b-a3b", "--vram-budget", "12GiB")
if j:
    check(j["budget"]["vram_budget"] == 12 * GiB, "budget as given")
    check(j["hardware"]["cpu_gbps"] and j["hardware"]["cpu_gbps_source"] == "measured", "CPU bandwidth measured")
    if j["hardware"]["gpu"] is None:
        check(j["decode"]["tok_s"] is None, "no tok/s without a GPU bandwidth")
        check(any("--gpu-bw" in n for n in j["notes"]), f"notes {j['notes']}")

# With assumed bandwidths: the default placement and its prediction.
j = fit_json(*preset, "--gpu-bw", "3350", "--cpu-bw", "50")
if j:
    b, t = j["budget"], j["totals"]
    check(b["vram_reserve"] == 12 * GiB // 20 + 256 * (1 << 20), f"reserve {b['vram_reserve']}")
    check(b["vram_usable"] == 12 * GiB - b["vram_reserve"], "usable = budget - reserve")
    check(t["CUDA0"]["total"] <= b["vram_usable"], "GPU total within the budget")
    check(j["placement"] == "auto", j["placement"])
    check(j["model"]["n_layer"] == 40 and j["model"]["n_expert"] == 256, "model shape")
    for what in ["attention", "deltanet", "norms", "router", "shared expert", "output head", "kv cache",
                 "deltanet state"]:
        rows = groups(j, what)
        check(rows and all(g["device"] == "CUDA0" for g in rows), f"{what} on the GPU: {rows}")
    check([g["device"] for g in groups(j, "token embedding")] == ["CPU"], "token embedding on the CPU")
    experts = groups(j, "routed experts")
    check({g["device"] for g in experts} == {"CPU", "CUDA0"}, "experts split between the devices")
    check(sum(g["n_layers"] for g in experts) == 40 and all(g["n_tensors"] == 3 * g["n_layers"] for g in experts),
          "experts placed in whole layers")
    d = j["decode"]
    check(abs(d["cpu_bytes_per_token"] / 1e9 - 0.29) < 0.03, f"CPU GB/token {d['cpu_bytes_per_token'] / 1e9}")
    ms = d["cpu_bytes_per_token"] / 50e9 * 1e3 + d["gpu_bytes_per_token"] / 3350e9 * 1e3 - d["overlap_ms"]
    check(abs(d["ms_per_token"] - ms) < 1e-9 and abs(d["tok_s"] - 1e3 / ms) < 1e-6, f"roofline {d}")

# llama.cpp spellings: -ngl 99 -cmoe == -ngl 99 --cpu-moe; -ncmoe; -ot (repeatable).
a, c = fit_json(*preset, "-ngl", "99", "-cmoe", "--cpu-bw", "50"), fit_json(*preset, "--n-gpu-layers", "99", "--cpu-moe", "--cpu-bw", "50")
if a and c:
    check(a["groups"] == c["groups"] and a["placement"] == "-ngl 99 --cpu-moe", f"aliases: {a['placement']}")
    check([g["device"] for g in groups(a, "routed experts")] == ["CPU"], "--cpu-moe: experts on the CPU")
    check(abs(a["decode"]["cpu_bytes_per_token"] / 1e9 - 0.61) < 0.02, "cpu-moe GB/token")
j = fit_json(*preset, "-ngl", "99", "-ncmoe", "25", "--cpu-bw", "50")
if j:
    check([(g["first_layer"], g["last_layer"], g["device"]) for g in groups(j, "routed experts")] ==
          [(0, 24, "CPU"), (25, 39, "CUDA0")], f"-ncmoe 25: {groups(j, 'routed experts')}")
j = fit_json(*preset, "-ot", r"blk\.39\.ffn_.*_exps=CUDA0", "-ot", "exps=CPU", "--cpu-bw", "50", "--tensors")
if j:
    dev = {t["name"]: t["device"] for t in j["tensors"]}
    check(dev["blk.39.ffn_up_exps.weight"] == "CUDA0" and dev["blk.38.ffn_up_exps.weight"] == "CPU", "-ot first match")
    check(len(j["tensors"]) == 733, f"{len(j['tensors'])} tensors")
j = fit_json(*preset, "--placement", "layers", "--cpu-bw", "50")
if j:
    check(j["placement"] == "layers", j["placement"])
    gpu = [g for g in j["groups"] if g["device"] == "CUDA0" and g["first_layer"] >= 0]
    check(gpu and all(g["first_layer"] <= 3 for g in gpu), f"layer split starts at the first layer: {gpu}")
    check(j["decode"]["cpu_bytes_per_token"] > 1.0e9, "a layer split leaves far more on the CPU")

# A fixture GGUF: header only. Everything fits a 1 GiB budget but the token embedding.
j = fit_json("-m", moe, "--vram-budget", "1GiB", "--gpu-bw", "1000", "--cpu-bw", "20", "--ram", "1GiB")
if j:
    check(j["model"]["n_layer"] == 4 and j["model"]["n_nextn"] == 1, "fixture shape")
    check({g["device"] for g in j["groups"] if g["what"] != "token embedding" and g["what"] != "compute scratch"} ==
          {"CUDA0"}, "all on the GPU")
    check([g["first_layer"] for g in groups(j, "mtp block")] == [4], "the MTP block is block 4")
    check(j["decode"]["tok_s"] > 0, "prediction")
r = run("-m", moe, "--cpu-bw", "20", "-c", "256", "-ctk", "q8_0", "-ctv", "q8_0", "--vram-budget", "0")
check(r.returncode == 0, f"text run: {r.stderr}")
check("placement: auto" in r.stdout and "| mtp block" in r.stdout and "KV q8_0/q8_0" in r.stdout, r.stdout)
check("predicted:" in r.stdout and "CUDA0 reads nothing" in r.stdout, "CPU-only prediction")

# Bad input: non-zero exit and a message naming the problem.
for args, message in [
    (["--preset", "qwen35moe-35b-a3b", "--vram-budget", "12parsecs"], "--vram-budget: '12parsecs' is not a size"),
    (["--preset", "qwen35moe-35b-a3b", "--ram", "-3G"], "--ram: '-3G' is not a size"),
    ([*preset, "-ot", r"blk\.(=CPU"], r"bad regular expression 'blk\.('"),
    ([*preset, "-ot", "exps=GPU"], "unknown device 'GPU'"),
    ([*preset, "--placement", "greedy"], "--placement 'greedy'"),
    ([*preset, "-ngl", "99"], "over budget"),
    ([*preset, "-ngl", "5", "--placement", "layers"], "give one of them"),
    (["--preset", "qwen35moe-35b-a3b", "--vram-budget", "8GiB", "--ram", "4GiB", "--cpu-bw", "50"], "missing"),
    ([*preset, "--gpu-bw", "-5"], "--gpu-bw must be a bandwidth"),
    ([*preset, "--depth", "5000"], "--depth must be 0..4096"),
    ([*preset, "-ctk", "q9_0"], "-ctk: unknown KV cache type 'q9_0'"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    ([], "give -m MODEL or --preset NAME"),
    (["-m", moe, "--preset", "qwen35moe-35b-a3b"], "give -m MODEL or --preset NAME"),
    (["-m", f"{fixtures}/no-such-model.gguf"], "no-such-model.gguf"),
    ([*preset, "--bogus"], "--bogus"),
]:
    r = run(*args)
    check(r.returncode != 0, f"{args}: exit 0")
    check(message in r.stderr, f"{args}: stderr {r.stderr!r} lacks {message!r}")
    check(r.stdout == "", f"{args}: printed {r.stdout!r}")

print("fit_cli_check:", "FAILED" if failures else "ok")
sys.exit(1 if failures else 0)
