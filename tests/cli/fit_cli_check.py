#!/usr/bin/env python3
"""`tandem fit` end to end: the full Qwen3.5-35B-A3B preset at a 12 GiB budget (JSON: budget
kept, every-token weights on the GPU, experts split by whole layers, a tok/s prediction),
the qwen35moe fixture GGUF (text and JSON, its MTP block), llama.cpp's override spellings
(-ngl, -cmoe, -ncmoe, -ot), and bad input exiting non-zero with a message that names the
problem.

The bytes decode reads per token are recomputed here from the tensor table (types and
shapes, sized by the gguf package's GGML_QUANT_SIZES; for the fixture, the file itself as
gguf's GGUFReader reads it) and the devices the plan gives each tensor, never pinned to an
earlier output of tandem's.

Usage: fit_cli_check.py TANDEM FIXTURES_DIR
"""
import json
import math
import re
import subprocess
import sys

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader

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


def type_bytes(type_name, n_elements):
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]]
    assert n_elements % block == 0, (type_name, n_elements)
    return n_elements // block * size


def preset_table(j):
    """name -> (type name, dims, bytes), sized from each tensor's type and shape by gguf-py."""
    table = {t["name"]: (t["type"], t["dims"], type_bytes(t["type"], math.prod(t["dims"]))) for t in j["tensors"]}
    wrong = [(t["name"], t["bytes"], table[t["name"]][2]) for t in j["tensors"] if t["bytes"] != table[t["name"]][2]]
    check(not wrong, f"tensor bytes differ from gguf's sizes (name, tandem, gguf): {wrong[:5]}")
    return table


def file_table(path):
    """name -> (type name, dims, bytes) as gguf's reader reads the file."""
    return {t.name: (t.tensor_type.name, [int(d) for d in t.shape], int(t.n_bytes)) for t in GGUFReader(path).tensors}


def expected_decode(j, table):
    """(CPU, GPU) bytes one decoded token reads: every tensor in full, except the token
    embedding (one row), routed experts (n_expert_used of n_expert, the MTP block's too) and
    the MTP blocks after the trunk unless the plan is for MTP speculation; the K and V of `depth` cached positions in each attention layer
    (widths from attn_k/attn_v, element sizes from gguf); the recurrent state read and
    written back (its size as the plan reports it)."""
    m, ctx, depth = j["model"], j["context"], j["decode"]["depth"]
    device = {t["name"]: t["device"] for t in j["tensors"]}
    check(set(device) == set(table), f"tensor names: {sorted(set(device) ^ set(table))[:5]}")
    read = {"CPU": 0.0, "CUDA0": 0.0}
    kv_per_position = 0
    for name, (type_name, dims, nbytes) in table.items():
        layer = re.match(r"blk\.(\d+)\.", name)
        layer = int(layer.group(1)) if layer else -1
        if layer >= m["n_layer"] and not j["mtp"]:
            continue  # MTP block, not run
        if name == "token_embd.weight":
            b = nbytes / dims[1]
        elif "_exps." in name:
            b = nbytes * m["n_expert_used"] / m["n_expert"]
        else:
            b = nbytes
        read[device[name]] += b
        for part, kv_type in (("attn_k.weight", ctx["type_k"]), ("attn_v.weight", ctx["type_v"])):
            if name.endswith(part) and layer < m["n_layer"]:
                kv_per_position += type_bytes(kv_type, dims[1])
    check(kv_per_position == ctx["kv_bytes_per_token"], f"KV bytes/position {kv_per_position} vs {ctx['kv_bytes_per_token']}")
    for g in groups(j, "kv cache"):
        read[g["device"]] += kv_per_position * depth * g["n_layers"] / ctx["attention_layers"]
    for g in groups(j, "deltanet state"):
        read[g["device"]] += 2 * g["bytes"]
    return read["CPU"], read["CUDA0"]


def check_decode(j, table, what):
    cpu, gpu = expected_decode(j, table)
    d = j["decode"]
    check(math.isclose(d["cpu_bytes_per_token"], cpu, rel_tol=1e-9) and math.isclose(d["gpu_bytes_per_token"], gpu, rel_tol=1e-9),
          f"{what}: bytes/token CPU {d['cpu_bytes_per_token']} GPU {d['gpu_bytes_per_token']}, "
          f"the tensor table gives CPU {cpu} GPU {gpu}")
    return cpu, gpu


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
j = fit_json(*preset, "--gpu-bw", "3350", "--cpu-bw", "50", "--tensors")
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
    check_decode(j, preset_table(j), "default placement")
    ms = d["cpu_bytes_per_token"] / 50e9 * 1e3 + d["gpu_bytes_per_token"] / 3350e9 * 1e3 - d["overlap_ms"]
    check(abs(d["ms_per_token"] - ms) < 1e-9 and abs(d["tok_s"] - 1e3 / ms) < 1e-6, f"roofline {d}")

# llama.cpp spellings: -ngl 99 -cmoe == -ngl 99 --cpu-moe; -ncmoe; -ot (repeatable).
a, c = fit_json(*preset, "-ngl", "99", "-cmoe", "--cpu-bw", "50", "--tensors"), fit_json(*preset, "--n-gpu-layers", "99", "--cpu-moe", "--cpu-bw", "50")
if a and c:
    check(a["groups"] == c["groups"] and a["placement"] == "-ngl 99 --cpu-moe", f"aliases: {a['placement']}")
    check([g["device"] for g in groups(a, "routed experts")] == ["CPU"], "--cpu-moe: experts on the CPU")
    cpu, _ = check_decode(a, preset_table(a), "--cpu-moe")
    experts = sum(t["bytes"] for t in a["tensors"] if "_exps." in t["name"])
    check(cpu >= experts * 8 / 256, "--cpu-moe: the CPU reads at least the active experts")
j = fit_json(*preset, "-ngl", "99", "-ncmoe", "25", "--cpu-bw", "50")
if j:
    check([(g["first_layer"], g["last_layer"], g["device"]) for g in groups(j, "routed experts")] ==
          [(0, 24, "CPU"), (25, 39, "CUDA0")], f"-ncmoe 25: {groups(j, 'routed experts')}")
j = fit_json(*preset, "-ot", r"blk\.39\.ffn_.*_exps=CUDA0", "-ot", "exps=CPU", "--cpu-bw", "50", "--tensors")
if j:
    dev = {t["name"]: t["device"] for t in j["tensors"]}
    check(dev["blk.39.ffn_up_exps.weight"] == "CUDA0" and dev["blk.38.ffn_up_exps.weight"] == "CPU", "-ot first match")
    check(len(j["tensors"]) == 733, f"{len(j['tensors'])} tensors")
j = fit_json(*preset, "--placement", "layers", "--cpu-bw", "50", "--tensors")
if j:
    check(j["placement"] == "layers", j["placement"])
    gpu = [g for g in j["groups"] if g["device"] == "CUDA0" and g["first_layer"] >= 0]
    check(gpu and all(g["first_layer"] <= 3 for g in gpu), f"layer split starts at the first layer: {gpu}")
    cpu, _ = check_decode(j, preset_table(j), "--placement layers")
    check(cpu > 1.0e9, "a layer split leaves far more on the CPU")

# A fixture GGUF: header only. Everything fits a 1 GiB budget but the token embedding.
j = fit_json("-m", moe, "--vram-budget", "1GiB", "--gpu-bw", "1000", "--cpu-bw", "20", "--ram", "1GiB", "--tensors")
if j:
    table = file_table(moe)
    check({t["name"]: (t["type"], t["dims"], t["bytes"]) for t in j["tensors"]} == table, "tensor table as gguf reads it")
    check_decode(j, table, "fixture")
    check(j["model"]["n_layer"] == 4 and j["model"]["n_nextn"] == 1, "fixture shape")
    # Planned for MTP speculation (fit's --spec auto, as run's): the block goes with the
    # every-token weights, its KV cache beside it; only its input part (nextn.*) stays on
    # the CPU with the token embedding.
    check(j["mtp"] is True, "planned for MTP by default")
    on_cpu = {t["name"] for t in j["tensors"] if t["device"] == "CPU"}
    check(on_cpu == {"token_embd.weight"} | {n for n in table if ".nextn." in n}, f"on the CPU: {sorted(on_cpu)}")
    check(sorted((g["device"], g["first_layer"]) for g in groups(j, "mtp block")) == [("CPU", 4), ("CUDA0", 4)],
          f"the MTP block is block 4: {groups(j, 'mtp block')}")
    check(any(g["first_layer"] <= 4 <= g["last_layer"] and g["device"] == "CUDA0" for g in groups(j, "kv cache")),
          f"the MTP block's KV cache on the GPU: {groups(j, 'kv cache')}")
    check(j["decode"]["tok_s"] > 0, "prediction")
    none = fit_json("-m", moe, "--vram-budget", "1GiB", "--gpu-bw", "1000", "--cpu-bw", "20", "--ram", "1GiB", "--tensors",
                    "--spec", "none")
    if none:
        check(none["mtp"] is False, "--spec none")
        check_decode(none, table, "fixture, --spec none")
        check(all(not (g["first_layer"] <= 4 <= g["last_layer"]) for g in groups(none, "kv cache")),
              "no KV cache for an MTP block that does not run")
        check(none["decode"]["gpu_bytes_per_token"] < j["decode"]["gpu_bytes_per_token"], "the block costs reads")
    check(j["decode"]["tok_s"] > 0, "prediction")
r = run("-m", moe, "--cpu-bw", "20", "-c", "256", "-ctk", "q8_0", "-ctv", "q8_0", "--vram-budget", "0")
check(r.returncode == 0, f"text run: {r.stderr}")
check("placement: auto" in r.stdout and "| mtp block" in r.stdout and "KV q8_0/q8_0" in r.stdout, r.stdout)
check("predicted:" in r.stdout and "CUDA0 reads nothing" in r.stdout, "CPU-only prediction")

# --sweep-vram: one row per budget, each the same plan and prediction a single fit at that
# budget gives; more VRAM never predicts a slower decode here.
sweep_args = ["--preset", "qwen35moe-35b-a3b", "--ram", "64GiB", "--gpu-bw", "1000", "--cpu-bw", "50"]
r = run(*sweep_args, "--sweep-vram", "4:24:5", "--json")
check(r.returncode == 0, f"--sweep-vram: {r.stderr}")
if r.returncode == 0:
    rows = json.loads(r.stdout)["sweep"]
    check([x["vram_budget_gib"] for x in rows] == [4, 9, 14, 19, 24], f"budgets {[x['vram_budget_gib'] for x in rows]}")
    for x in rows:
        single = fit_json(*sweep_args, "--vram-budget", f"{x['vram_budget_gib']}GiB")
        if single:
            check(x["gpu_total"] == single["totals"]["CUDA0"]["total"] and
                  math.isclose(x["tok_s"], single["decode"]["tok_s"], rel_tol=1e-12),
                  f"sweep row {x} differs from fit --vram-budget {x['vram_budget_gib']}GiB")
    check(all(a["tok_s"] <= b["tok_s"] for a, b in zip(rows, rows[1:])), f"tok/s falls with more VRAM: {rows}")
    check(rows[-1]["tok_s"] > rows[0]["tok_s"], "24 GiB predicts more than 4 GiB")
r = run(*sweep_args, "--sweep-vram")  # no value: 4 to 24 GiB in steps of 2
check(r.returncode == 0 and r.stdout.count(" GiB |") >= 11 and "| 24.0 GiB |" in r.stdout, f"default sweep: {r.stdout}")

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
    ([*sweep_args, "--sweep-vram", "24:4:2"], "--sweep-vram wants FROM:TO:STEP"),
    ([*sweep_args, "--sweep-vram", "4:24"], "--sweep-vram wants FROM:TO:STEP"),
    ([*preset, "--sweep-vram", "4:8:2", "--cpu-bw", "50"], "drop --vram-budget"),
]:
    r = run(*args)
    check(r.returncode != 0, f"{args}: exit 0")
    check(message in r.stderr, f"{args}: stderr {r.stderr!r} lacks {message!r}")
    check(r.stdout == "", f"{args}: printed {r.stdout!r}")

print("fit_cli_check:", "FAILED" if failures else "ok")
sys.exit(1 if failures else 0)
