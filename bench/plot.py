#!/usr/bin/env python3
"""Draws tok/s against the swept parameter as an SVG (or PNG), from

  * `tandem bench ... -o json` (or jsonl; llama-bench's JSON reads the same): one line per
    test kind (prompt processing pp, token generation tg) and model, against whichever of
    n_threads, n_prompt, n_gen, n_depth, n_ubatch, n_cpu_moe, vram_budget varies;
  * `tandem fit --sweep-vram --json`: predicted decode tok/s against the VRAM budget.

usage: tandem bench -m M.gguf -t 1,2 -o json | bench/plot.py -o threads.svg [--x n_prompt] [--title T]
       bench/plot.py results.json -o out.svg
       bench/plot.py tandem.json llama.json -o out.svg   (several runs: series named by file)

matplotlib (PyPI) draws it; the engine itself never depends on it.
"""
import argparse
import json
import sys
from collections import defaultdict

SWEEPABLE = ["n_threads", "n_prompt", "n_gen", "n_depth", "n_ubatch", "n_cpu_moe", "vram_budget", "type_k"]
LABELS = {"n_threads": "threads", "n_prompt": "prompt tokens", "n_gen": "generated tokens",
          "n_depth": "context depth (tokens)", "n_ubatch": "micro-batch (tokens)", "n_cpu_moe": "--n-cpu-moe",
          "vram_budget": "VRAM budget", "type_k": "KV cache type", "vram_budget_gib": "VRAM budget (GiB)"}


def load(text):
    text = text.strip()
    if not text:
        sys.exit("plot.py: no input (pipe `tandem bench -o json` or give a file)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            sys.exit(f"plot.py: the input is neither JSON nor JSON lines: {e}")
    return data


def bench_series(rows, x=None):
    """{label: [(x, tok/s, stddev)]}, the x field's name and the CPU. One series per test kind
    (pp, tg) and model, and per value of every other field that varies."""
    if not rows or not all(isinstance(r, dict) and "avg_ts" in r for r in rows):
        sys.exit("plot.py: expected tandem bench / llama-bench JSON results (objects with avg_ts)")
    kind = lambda r: "pp" if r.get("n_prompt", 0) > 0 else "tg"
    # A field is swept when it varies within one test kind (n_prompt differs between pp and tg
    # anyway); rows without the field (another tool's JSON) do not count.
    swept = [f for f in SWEEPABLE
             if any(len({json.dumps(r[f]) for r in rows if kind(r) == k and f in r}) > 1 for k in ("pp", "tg"))]
    if x is None:
        if not swept:
            sys.exit("plot.py: nothing varies between the tests (sweep -t, -p, -n, -d, -ub, ... with a comma list)")
        x = swept[0]
    elif x not in SWEEPABLE:
        sys.exit(f"plot.py: --x must be one of {', '.join(SWEEPABLE)}")
    series = defaultdict(list)
    for r in rows:
        if (x == "n_prompt" and kind(r) == "tg") or (x == "n_gen" and kind(r) == "pp"):
            continue  # a tg test has no prompt length to stand at, a pp test no generation length
        label = f"{str(r.get('model_filename', r.get('model_type', 'model'))).split('/')[-1]} {kind(r)}"
        if x != "n_prompt" and kind(r) == "pp":
            label += str(r["n_prompt"])
        if x != "n_gen" and kind(r) == "tg":
            label += str(r["n_gen"])
        for f in swept:
            if f not in (x, "n_prompt", "n_gen"):
                label += f" {LABELS.get(f, f)}={r.get(f)}"
        series[label].append((r.get(x), r["avg_ts"], r.get("stddev_ts", 0.0)))
    return series, x, rows[0].get("cpu_info", "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", help="JSON files (default: stdin); several are drawn together, each "
                                              "series named by its file")
    ap.add_argument("-o", "--output", required=True, help="SVG or PNG file to write")
    ap.add_argument("--title", default="")
    ap.add_argument("--x", help="the field on the x axis when several vary (default: the first of "
                                + ", ".join(SWEEPABLE) + " that varies)")
    a = ap.parse_args()
    if len(a.inputs) > 1:  # several runs (e.g. tandem and llama-bench): rows tagged by their file
        data = []
        for path in a.inputs:
            rows = load(open(path).read())
            if not isinstance(rows, list):
                sys.exit(f"plot.py: {path}: several inputs must all be bench results")
            stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            data += [dict(r, model_filename=stem) for r in rows if isinstance(r, dict)]
    else:
        data = load(open(a.inputs[0]).read() if a.inputs else sys.stdin.read())

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    matplotlib.rcParams["svg.hashsalt"] = "tandem"  # the same data draws the same file
    matplotlib.rcParams["svg.fonttype"] = "none"    # text stays text (smaller, searchable)

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if isinstance(data, dict) and "sweep" in data:  # tandem fit --sweep-vram --json
        pts = [(r["vram_budget_gib"], r["tok_s"]) for r in data["sweep"] if r["tok_s"] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="predicted decode (roofline)")
        ax.set_xlabel(LABELS["vram_budget_gib"])
        subtitle = f"GPU {data['gpu_gbps']:.0f} GB/s, CPU {data['cpu_gbps'] or 0:.1f} GB/s, depth {data['depth']}"
        title = a.title or f"{data['model']}: tandem fit --sweep-vram"
    else:
        series, x, cpu = bench_series(data if isinstance(data, list) else [data], a.x)
        categorical = any(isinstance(v, str) for pts in series.values() for v, _, _ in pts)
        for label, pts in sorted(series.items()):
            pts.sort(key=lambda p: (str(p[0]) if categorical else p[0]))
            xs = [str(p[0]) for p in pts] if categorical else [p[0] for p in pts]
            ax.errorbar(xs, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3, label=label)
        ax.set_xlabel(LABELS.get(x, x))
        if x in ("n_prompt", "n_depth", "n_ubatch") and not categorical:
            ax.set_xscale("log", base=2)
            xs = sorted({p[0] for pts in series.values() for p in pts})
            ax.set_xticks(xs, [str(v) for v in xs])
        elif not categorical:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        subtitle = cpu
        title = a.title or f"tandem bench: tok/s against {LABELS.get(x, x)}"
    ax.set_ylabel("tokens per second")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(a.output, metadata={"Date": None} if a.output.endswith(".svg") else None)
    print(f"plot.py: wrote {a.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
