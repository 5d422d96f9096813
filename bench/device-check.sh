#!/usr/bin/env bash
# The GPU check of the CUDA backend (issue 5) as ONE call on a lent device machine, so its
# minutes go to measuring, not to debugging this script:
#
#   here (no GPU needed):  bash bench/device-check.sh --prepare
#       builds build/device (Release, CUDA for sm_89 + sm_90: tandem, cuda_backend_test,
#       interleaved_test, backend_test, tandem_kernel_bench) and puts the binaries, stripped,
#       with the non-CUDA shared libraries they need (libfmt, libpcre2: the device machine
#       cannot install packages) in build/device-carry.
#   device (run tool):     carry: ["build/device-carry"]
#                          command: bash bench/device-check.sh --out "$OUT"   (7 files:
#                          within the run tool's 8; with bench/hybrid.sh in the same call,
#                          write both to /tmp and tar them into $OUT)
#   here, rehearsal:       bash bench/device-check.sh --out /tmp/device-check --layers 4
#       (every GPU step reports "no GPU" and the script still ends with its table)
#
# Steps: tandem devices --bandwidth (HBM read and host<->device copy GB/s), the CUDA op
# tests (gtest JSON to $OUT), tandem synth of a qwen35moe Q4_K_M (16 layers by default, on
# the device's local disk), tandem bench on it (pp512/tg128) full-GPU when the build has
# GPU execution, and a table: op tests passed/failed/skipped, pp512, tg128, decode as % of
# the HBM roofline (weights read per token / measured read bandwidth). Also the host CPU:
# the interleaved kernel tests and the float-weight dots (natively on its VNNI and BF16
# paths, which no machine here has) and tandem_kernel_bench on every ISA path it runs (cpu.txt).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$ROOT/build/device"
out="" layers=16 prepare=0 reps=3
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) prepare=1; shift ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --layers) layers="${2:?--layers needs a number}"; shift 2 ;;
    -r) reps="${2:?-r needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device-check: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$prepare" = 1 ]; then
  set -e
  NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
  [ -x "$NVCC" ] || { echo "device-check: nvcc not found" >&2; exit 1; }
  PY="$ROOT/.venv/bin/python"; [ -x "$PY" ] || PY="$(command -v python3)"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="89;90" -DTANDEM_PYTHON="$PY" >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" --target tandem_cli cuda_backend_test interleaved_test backend_test tandem_kernel_bench
  carried=("$BUILD/tandem" "$BUILD/tests/backend/cuda/cuda_backend_test" "$BUILD/tests/backend/interleaved_test"
           "$BUILD/tests/backend/backend_test" "$BUILD/tandem_kernel_bench")
  mkdir -p "$BUILD/lib"
  # Debian's shared libraries that a CUDA image may lack; the CUDA ones come from the device.
  for bin in "${carried[@]}"; do
    ldd "$bin" | awk '/libfmt|libpcre2/ {print $3}' | xargs -r -I{} cp -L {} "$BUILD/lib/"
  done
  # Only what the device run needs travels (the run tool carries at most 64 MiB).
  CARRY="$ROOT/build/device-carry"
  rm -rf "$CARRY" && mkdir -p "$CARRY/lib"
  for bin in "${carried[@]}"; do cp "$bin" "$CARRY/" && strip "$CARRY/$(basename "$bin")"; done
  cp "$BUILD/lib/"* "$CARRY/lib/"
  du -sh "$CARRY"
  echo "device-check: prepared; carry [\"build/device-carry\"]"
  exit 0
fi

[ -n "$out" ] || { echo "device-check: --out FOLDER is required" >&2; exit 2; }
mkdir -p "$out"
CARRY="$ROOT/build/device-carry"
TANDEM="$CARRY/tandem"
TESTS="$CARRY/cuda_backend_test"
[ -x "$TANDEM" ] && [ -x "$TESTS" ] || { echo "device-check: $CARRY is not prepared (run --prepare here and carry it)" >&2; exit 1; }
export TANDEM_SOURCE_DIR="$ROOT"  # the fixtures, wherever this checkout is
export LD_LIBRARY_PATH="$CARRY/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
log() { echo "== $* ==" | tee -a "$out/summary.txt"; }

log "devices"
"$TANDEM" devices --bandwidth 2>&1 | tee "$out/devices.txt"
read_gbps="$(sed -n 's/.*bandwidth: read \([0-9.]*\) GB\/s.*/\1/p' "$out/devices.txt" | head -n 1)"
has_gpu=0; grep -q '^gpu [0-9]' "$out/devices.txt" && has_gpu=1

log "CUDA op tests"
"$TESTS" --gtest_output="json:$out/cuda_tests.json" >"$out/cuda_tests.txt" 2>&1
tests_rc=$?
tail -n 25 "$out/cuda_tests.txt"
passed="$(grep -c '^\[       OK \]' "$out/cuda_tests.txt")"
failed="$(grep -c '^\[  FAILED  \] [A-Za-z]' "$out/cuda_tests.txt")"
skipped="$(grep -c '^\[  SKIPPED \] [A-Za-z].*(' "$out/cuda_tests.txt")"

log "host CPU: interleaved kernel tests and kernel bench per ISA path"
cpu_tests="n/a" cpu_paths="n/a"
if [ -x "$CARRY/interleaved_test" ] && [ -x "$CARRY/tandem_kernel_bench" ]; then
  {
    grep -m1 'model name' /proc/cpuinfo
    "$CARRY/interleaved_test" 2>&1 | grep -E '^\[  (FAILED|PASSED|SKIPPED) |SKIPPED:'
    # The float-weight dots, natively on AVX512-BF16 where the CPU has it.
    [ -x "$CARRY/backend_test" ] && "$CARRY/backend_test" --gtest_filter='DotRows*:QuantDot.FloatWeight*' 2>&1 |
      grep -E '^\[  (FAILED|PASSED|SKIPPED) |SKIPPED:'
    for isa in avx2 avx-vnni avx512-vnni; do
      "$CARRY/tandem_kernel_bench" --isa "$isa" --layout x8 --types q4_k,q5_k,q6_k,iq4_xs,q5_0,q8_0 --seconds 0.2 2>&1
    done
  } >"$out/cpu.txt"
  cat "$out/cpu.txt"
  if grep -q -E '^\[  FAILED  \]' "$out/cpu.txt"; then
    cpu_tests="FAILED (see cpu.txt)"
  else
    cpu_tests="$(grep -E '^\[  PASSED  \]' "$out/cpu.txt" | sed 's/^\[  PASSED  \] //' | tr '\n' ' ')"
  fi
  cpu_paths="$(grep '^isa ' "$out/cpu.txt" | cut -d, -f1 | sed 's/^isa //' | tr '\n' ' ')"
fi

log "synth qwen35moe-35b-a3b, $layers layers, q4_k_m"
model="${TMPDIR:-/tmp}/device-check-qwen35moe-${layers}l-q4_k_m.gguf"
[ -f "$model" ] || "$TANDEM" synth --preset qwen35moe-35b-a3b --layers "$layers" --type q4_k_m -o "$model" 2>&1 | tail -n 3
# Bytes a decode step reads with everything on the GPU (tandem fit's roofline, depth 0 as tg128).
weights_bytes="$("$TANDEM" fit -m "$model" -ngl 99 --depth 0 --vram-budget 130GiB --gpu-bw 1000 --cpu-bw 100 --json 2>/dev/null |
  python3 -c 'import json, sys; print(int(json.load(sys.stdin)["decode"]["gpu_bytes_per_token"]))' 2>/dev/null)"

# avg_ts FILE FIELD: the tok/s of the first test in a llama-bench JSON whose FIELD is > 0.
avg_ts() {
  python3 -c 'import json, sys; print(next((t["avg_ts"] for t in json.load(open(sys.argv[1])) if t[sys.argv[2]] > 0), ""))' \
    "$1" "$2" 2>/dev/null
}
pp="" tg="" tg_eager=""
if [ "$has_gpu" = 1 ]; then
  log "bench full-GPU (-ngl 99)"
  "$TANDEM" bench -m "$model" -ngl 99 -p 512 -n 128 -r "$reps" -o json --progress >"$out/bench.json" 2>"$out/bench.err"
  cat "$out/bench.err"
  pp="$(avg_ts "$out/bench.json" n_prompt)"
  tg="$(avg_ts "$out/bench.json" n_gen)"
  log "bench full-GPU tg128 without decode graphs (TANDEM_CUDA_GRAPHS=0)"
  TANDEM_CUDA_GRAPHS=0 "$TANDEM" bench -m "$model" -ngl 99 -p 0 -n 128 -r "$reps" -o json >"$out/bench_nographs.json" 2>&1
  tg_eager="$(avg_ts "$out/bench_nographs.json" n_gen)"
else
  log "bench full-GPU: SKIPPED, no GPU here"
fi

roofline=""
if [ -n "$tg" ] && [ -n "$read_gbps" ] && [ -n "$weights_bytes" ]; then
  roofline="$(python3 -c "print(f'{100 * $tg * $weights_bytes / ($read_gbps * 1e9):.0f}%')")"
fi
{
  echo
  echo "| check | result |"
  echo "|---|---|"
  echo "| GPU | $([ $has_gpu = 1 ] && grep -m1 '^gpu [0-9]' "$out/devices.txt" | cut -d: -f2- || echo 'none found') |"
  echo "| HBM read bandwidth | ${read_gbps:-n/a} GB/s |"
  echo "| CUDA op tests | $passed passed, $failed failed, $skipped skipped (exit $tests_rc) |"
  echo "| host CPU kernel tests (interleaved, float dots) | $cpu_tests |"
  echo "| host CPU kernel paths benched | $cpu_paths |"
  echo "| qwen35moe ${layers}L Q4_K_M pp512 | ${pp:-n/a} tok/s |"
  echo "| qwen35moe ${layers}L Q4_K_M tg128 | ${tg:-n/a} tok/s (without decode graphs: ${tg_eager:-n/a}) |"
  echo "| tg128 vs HBM roofline | ${roofline:-n/a} (${weights_bytes:-?} bytes/token) |"
} | tee -a "$out/summary.txt"
[ "$tests_rc" = 0 ]
