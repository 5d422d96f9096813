#!/usr/bin/env bash
# Hybrid GPU + CPU on a 12 GiB budget (issue 6), as ONE call on a lent device machine:
#
#   here:    bash bench/device-check.sh --prepare      (builds build/device-carry)
#   device:  carry ["build/device-carry"], command: bash bench/hybrid.sh --out /tmp/hy; the
#            run tool brings back at most 8 files: tar the folder into $OUT (summary.txt is
#            the table; every run's JSON and stderr are beside it)
#   here, rehearsal (no GPU: every run falls back to the CPU, so use a small model):
#            bash bench/hybrid.sh --out /tmp/hybrid --layers 4 -p 32 -n 8 -r 1
#
# Writes a synthetic qwen35moe-35b-a3b Q4_K_M (40 layers by default) on the local disk,
# then with --vram-budget 12GiB runs pp and tg for: (a) --placement layers (the plain layer
# split), (b) -ngl 99 --cpu-moe, (c) the default placement (no flags), (d) -ngl 99
# --n-cpu-moe K for the smallest K that fits the budget and K+2 (the hand-tuned setting);
# prints tok/s, the ratios the issue asks for, and tandem fit's prediction for (c). Then
# expert streaming for prompts: (c)'s pp with --expert-streaming off / auto / on, at the
# given -p (micro-batch 512) and at 2048 tokens in one micro-batch (-ub 2048).
# A llama.cpp CUDA build, if one was carried, can be named with --peer PATH/llama-bench.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CARRY="$ROOT/build/device-carry"
TANDEM="$CARRY/tandem"
out="" layers=40 p=512 n=128 reps=2 budget=12GiB peer=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="${2:?}"; shift 2 ;;
    --layers) layers="${2:?}"; shift 2 ;;
    -p) p="${2:?}"; shift 2 ;;
    -n) n="${2:?}"; shift 2 ;;
    -r) reps="${2:?}"; shift 2 ;;
    --budget) budget="${2:?}"; shift 2 ;;
    --peer) peer="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "hybrid: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "hybrid: --out FOLDER is required" >&2; exit 2; }
[ -x "$TANDEM" ] || { echo "hybrid: $CARRY is not prepared (bash bench/device-check.sh --prepare)" >&2; exit 1; }
mkdir -p "$out"
export LD_LIBRARY_PATH="$CARRY/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"

model="${TMPDIR:-/tmp}/hybrid-qwen35moe-${layers}l-q4_k_m.gguf"
[ -f "$model" ] || "$TANDEM" synth --preset qwen35moe-35b-a3b --layers "$layers" --type q4_k_m -o "$model" 2>&1 | tail -n 1

# tok/s of one configuration: "pp tg" (or "fail fail"). PP_TOKENS / TG_TOKENS override -p / -n.
run() {
  local name="$1"; shift
  "$TANDEM" bench -m "$model" -p "${PP_TOKENS:-$p}" -n "${TG_TOKENS:-$n}" -r "$reps" -o json --vram-budget "$budget" \
    --progress "$@" >"$out/$name.json" 2>"$out/$name.err" || { echo "fail fail"; return; }
  python3 - "$out/$name.json" <<'EOF'
import json, sys
tests = json.load(open(sys.argv[1]))
pp = next((t["avg_ts"] for t in tests if t["n_prompt"] > 0), 0)
tg = next((t["avg_ts"] for t in tests if t["n_gen"] > 0), 0)
print(f"{pp:.2f} {tg:.2f}")
EOF
}

declare -A PP TG
for cfg in "layers:--placement layers" "cpu_moe:-ngl 99 --cpu-moe" "default:"; do
  name="${cfg%%:*}" flags="${cfg#*:}"
  # shellcheck disable=SC2086
  read -r PP[$name] TG[$name] < <(run "$name" $flags)
  echo "$name: pp ${PP[$name]} tg ${TG[$name]} ($(grep -m1 '^placement' "$out/$name.err" || echo 'CPU only'))"
done
# The hand-tuned llama.cpp setting: the smallest K whose placement fits the budget (tandem fit
# refuses the rest with the amount missing; no run needed to find it), then K and K+2 run.
k_min=""
for ((k = 0; k <= layers; ++k)); do
  if "$TANDEM" fit -m "$model" -ngl 99 --n-cpu-moe "$k" --vram-budget "$budget" --gpu-bw 1000 --cpu-bw 100 >/dev/null 2>&1; then
    k_min="$k"; break
  fi
done
best_k="" best_tg=0
for k in ${k_min:+$k_min $((k_min + 2))}; do
  [ "$k" -le "$layers" ] || continue
  read -r pk tk < <(run "ncmoe$k" -ngl 99 --n-cpu-moe "$k")
  echo "-ngl 99 --n-cpu-moe $k: pp $pk tg $tk"
  if python3 -c "import sys; sys.exit(0 if '$tk' != 'fail' and float('$tk') > float('$best_tg') else 1)"; then
    best_k="$k" best_tg="$tk"
  fi
done
pred="$("$TANDEM" fit -m "$model" --vram-budget "$budget" --depth 0 --json 2>/dev/null |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["decode"]["tok_s"])' 2>/dev/null)"
peer_tg=""
if [ -n "$peer" ] && [ -n "$best_k" ]; then
  "$peer" -m "$model" -ngl 99 --n-cpu-moe "$best_k" -p "$p" -n "$n" -r "$reps" -o json >"$out/peer.json" 2>"$out/peer.err" &&
    peer_tg="$(python3 -c 'import json,sys; print(next(t["avg_ts"] for t in json.load(open(sys.argv[1])) if t["n_gen"]>0))' "$out/peer.json")"
fi
ratio() { python3 -c "a, b = '$1', '$2'; print(f'{float(a)/float(b):.2f}x' if a not in ('', 'fail', 'None') and b not in ('', 'fail', 'None', '0', '0.00') else 'n/a')"; }
{
  echo
  echo "| qwen35moe ${layers}L Q4_K_M, --vram-budget $budget | pp$p tok/s | tg$n tok/s |"
  echo "|---|---:|---:|"
  echo "| (a) --placement layers | ${PP[layers]} | ${TG[layers]} |"
  echo "| (b) -ngl 99 --cpu-moe | ${PP[cpu_moe]} | ${TG[cpu_moe]} |"
  echo "| (c) default | ${PP[default]} | ${TG[default]} |"
  echo "| (d) best -ngl 99 --n-cpu-moe K (K=${best_k:-none}) | | ${best_tg} |"
  echo
  echo "tg (c)/(a): $(ratio "${TG[default]}" "${TG[layers]}") (target >= 2.0x); (c)/(b): $(ratio "${TG[default]}" "${TG[cpu_moe]}") (>= 1.8x);"
  echo "(c)/(d): $(ratio "${TG[default]}" "$best_tg") (>= 0.95x); (c) vs tandem fit's prediction ${pred:-n/a} tok/s: $(ratio "${TG[default]}" "${pred:-}")"
  [ -n "$peer_tg" ] && echo "llama.cpp -ngl 99 --n-cpu-moe $best_k: tg $peer_tg; (c)/peer: $(ratio "${TG[default]}" "$peer_tg") (>= 1.2x)"
} | tee "$out/summary.txt"

# Expert streaming (prompts only): the default placement's pp with streaming off, auto and on.
declare -A SP
for tokens in "$p:512" "2048:2048"; do
  pp_tokens="${tokens%%:*}" ub="${tokens#*:}"
  for mode in off auto on; do
    read -r SP[$mode$ub] _ < <(PP_TOKENS="$pp_tokens" TG_TOKENS=0 run "stream_${mode}_$ub" -ub "$ub" --expert-streaming "$mode")
    grep -m1 '^placement' "$out/stream_${mode}_$ub.err" | sed "s/^/stream $mode -ub $ub: /"
  done
done
{
  echo
  echo "| expert streaming, default placement | off | auto | on | auto/off | on/off |"
  echo "|---|---:|---:|---:|---:|---:|"
  for tokens in "$p:512" "2048:2048"; do
    ub="${tokens#*:}"
    echo "| pp${tokens%%:*} -ub $ub | ${SP[off$ub]} | ${SP[auto$ub]} | ${SP[on$ub]} | $(ratio "${SP[auto$ub]}" "${SP[off$ub]}") | $(ratio "${SP[on$ub]}" "${SP[off$ub]}") |"
  done
} | tee -a "$out/summary.txt"
