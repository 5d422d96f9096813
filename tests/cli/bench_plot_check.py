#!/usr/bin/env python3
"""bench/plot.py on real sweeps: `tandem bench -t 1,2` and `-p` lists on a fixture, and
`tandem fit --sweep-vram --json`, each drawn as an SVG whose series, axis and points are
read back from the file (text kept as text); its errors on input it cannot plot.

Usage: bench_plot_check.py TANDEM FIXTURES_DIR OUT_DIR
"""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

tandem, fixtures, out_dir = sys.argv[1:4]
plot = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "plot.py")
model = f"{fixtures}/qwen2/model-q8_0.gguf"
os.makedirs(out_dir, exist_ok=True)
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def texts(svg_path):
    return [t.text or "" for t in ET.parse(svg_path).iter("{http://www.w3.org/2000/svg}text")]


def draw(source_args, name, tool="bench"):
    data = subprocess.run([tandem, tool, *source_args], capture_output=True, text=True)
    check(data.returncode == 0, f"{tool} {source_args}: {data.stderr}")
    out = os.path.join(out_dir, name)
    p = subprocess.run([sys.executable, plot, "-o", out], input=data.stdout, capture_output=True, text=True)
    check(p.returncode == 0, f"plot.py {name}: {p.stderr}")
    text = data.stdout.strip()
    parsed = [json.loads(l) for l in text.splitlines()] if "-o" in source_args and "jsonl" in source_args else json.loads(text)
    return parsed, out


rows, svg = draw(["-m", model, "-t", "1,2", "-p", "16", "-n", "4", "-r", "2", "-o", "json"], "threads.svg")
check(sorted((r["n_threads"], r["n_prompt"]) for r in rows) == [(1, 0), (1, 16), (2, 0), (2, 16)], f"bench rows {rows}")
t = texts(svg)
check("threads" in t, f"x axis label in {t}")
check(any(s.endswith(" pp16") for s in t) and any(s.endswith(" tg4") for s in t), f"one series per test kind: {t}")
# Each series is drawn through its points: two per series (threads 1 and 2).
lines = [g for g in ET.parse(svg).iter("{http://www.w3.org/2000/svg}g") if g.get("id", "").startswith("line2d")]
check(len(lines) >= 2, "line series drawn")

rows, svg = draw(["-m", model, "-p", "8,32", "-n", "0", "-r", "1", "-o", "jsonl"], "prompt.svg")
check([r["n_prompt"] for r in rows] == [8, 32], f"prompt sweep rows {rows}")
check("prompt tokens" in texts(svg), f"prompt-length sweep axis: {texts(svg)}")

# Two fields vary: the first is the x axis, the other names the series; --x picks the axis.
rows, svg = draw(["-m", model, "-t", "1,2", "-p", "8,32", "-n", "0", "-r", "1", "-o", "json"], "two.svg")
t = texts(svg)
check("threads" in t and any(s.endswith(" pp8") for s in t) and any(s.endswith(" pp32") for s in t), f"two fields: {t}")
p = subprocess.run([sys.executable, plot, "--x", "n_prompt", "-o", os.path.join(out_dir, "two-x.svg")],
                   input=json.dumps(rows), capture_output=True, text=True)
t = texts(os.path.join(out_dir, "two-x.svg"))
check(p.returncode == 0 and "prompt tokens" in t and any(s.endswith(" pp threads=2") for s in t), f"--x n_prompt: {t}")

# Two runs drawn together: each series named by its file.
for name in ("first", "second"):
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(rows, f)
p = subprocess.run([sys.executable, plot, os.path.join(out_dir, "first.json"), os.path.join(out_dir, "second.json"),
                    "-o", os.path.join(out_dir, "both.svg")], capture_output=True, text=True)
t = texts(os.path.join(out_dir, "both.svg"))
check(p.returncode == 0 and any(s.startswith("first pp8") for s in t) and any(s.startswith("second pp8") for s in t),
      f"two runs: {p.stderr} {t}")

sweep, svg = draw(["--preset", "qwen35moe-35b-a3b", "--ram", "64GiB", "--gpu-bw", "1000", "--cpu-bw", "50",
                   "--sweep-vram", "4:24:4", "--json"], "fit.svg", tool="fit")
check(len(sweep["sweep"]) == 6 and "VRAM budget (GiB)" in texts(svg), f"fit sweep plot: {texts(svg)}")

# Input it cannot plot: a clear message, non-zero exit.
for text, message in [("", "no input"), ("not json", "neither JSON nor JSON lines"),
                      ('[{"n_threads": 1}]', "expected tandem bench"),
                      ('[{"avg_ts": 1, "n_threads": 2, "n_prompt": 8}]', "nothing varies")]:
    p = subprocess.run([sys.executable, plot, "-o", os.path.join(out_dir, "bad.svg")], input=text,
                       capture_output=True, text=True)
    check(p.returncode != 0 and message in p.stderr, f"{text!r}: exit {p.returncode}, {p.stderr!r}")

print("bench_plot_check:", "FAILED" if failures else "ok")
sys.exit(1 if failures else 0)
