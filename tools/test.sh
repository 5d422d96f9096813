#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this after tools/setup.sh):
#   1. release build + every unit and oracle test (ctest)
#   2. ASan+UBSan build + every test except four slow oracle comparisons
#   3. CUDA build (library, CLI and the CUDA op tests; `tandem devices` must fall back to the
#      CPU cleanly; the op tests skip without a device)
#   4. libFuzzer runs: GGUF parser (seeded with real files), tokenizer, Jinja templates, the
#      server's request parsers, grammars and JSON Schemas
# Shared data (../shared) and the real model are required: a missing one fails the run; so
# are the tests of every CPU feature this machine has (TANDEM_REQUIRE_ISA, set after step 1).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="$ROOT/.venv/bin/python"
JOBS="${JOBS:-$(nproc)}"
export TANDEM_SHARED="${TANDEM_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
export TANDEM_REQUIRE_SHARED=1
[ -d "$TANDEM_SHARED/data" ] || { echo "test: shared data not found at $TANDEM_SHARED" >&2; exit 1; }

step() { echo; echo "=== $* ==="; }

# gtest_summary LOG WHAT: "WHAT: N passed, N skipped, N failed", then each skip reason
# with its count (the line GTEST_SKIP printed under "Skipped").
gtest_summary() {
  local log="$1" what="$2" passed skipped failed
  passed=$(grep -c '^\[       OK \] .* ([0-9]* ms)$' "$log" || true)
  skipped=$(grep -c '^\[  SKIPPED \] .* ([0-9]* ms)$' "$log" || true)
  failed=$(grep -c '^\[  FAILED  \] .* ([0-9]* ms)$' "$log" || true)
  echo "$what: $passed passed, $skipped skipped, $failed failed"
  grep -A1 ': Skipped$' "$log" | grep -v -e ': Skipped$' -e '^--$' | sort | uniq -c | sed 's/^ *\([0-9]*\) /  \1 x /' || true
}

step "fetch the real test model"
MODEL="$(PYTHON="$PY" tools/fetch_model.sh)"
export TANDEM_TEST_MODEL="$MODEL"

step "release build + tests"
cmake --preset release -DTANDEM_PYTHON="$PY" -DTANDEM_TEST_MODEL="$MODEL" -DTANDEM_SHARED="$TANDEM_SHARED" >/dev/null
cmake --build build/release -j "$JOBS"
# TANDEM_REQUIRE_ISA=auto (.ci/run's setting, and the default): every CPU feature tandem
# detects here (as `tandem devices` prints them, uncapped by TANDEM_CPU_MAX) must have its
# tests run; a feature-gated test that skips is then a failure (tests/support/test_support.h).
# The core test CpuFeatures.AgreesWithProcCpuinfo checks that detection against the kernel's.
if [ "${TANDEM_REQUIRE_ISA-auto}" = auto ]; then
  TANDEM_REQUIRE_ISA="$(env -u TANDEM_CPU_MAX build/release/tandem devices | sed -n 's/^cpu: .*, features: //p')"
  [ -n "$TANDEM_REQUIRE_ISA" ] || { echo "test: no CPU feature line from 'tandem devices'" >&2; exit 1; }
  [ "$TANDEM_REQUIRE_ISA" != none ] || TANDEM_REQUIRE_ISA=
fi
export TANDEM_REQUIRE_ISA
echo "CPU features whose tests must run (TANDEM_REQUIRE_ISA): ${TANDEM_REQUIRE_ISA:-none}"
ctest --test-dir build/release -j "$JOBS" --output-on-failure --no-tests=error

step "ASan+UBSan build + tests"
# Skipped here: the oracle runs and the structured-output run of the real model (a hundred
# sampled generations; 10 min under ASan, the pass's longest test). The grammar engine's own tests and its fuzzer
# cover it under the sanitizers.
cmake --preset asan -DTANDEM_PYTHON="$PY" -DTANDEM_TEST_MODEL="$MODEL" -DTANDEM_SHARED="$TANDEM_SHARED" >/dev/null
cmake --build build/asan -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan -j "$JOBS" --output-on-failure --no-tests=error \
    -E 'gguf_oracle_shared_and_model|template_oracle_matrix|real_model_greedy_oracle|real_model_perplexity_oracle|structured_output_real_model'

step "CUDA build"
NVCC="$(command -v nvcc || true)"
[ -n "$NVCC" ] || { [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc; } || true
if [ -n "$NVCC" ]; then
  cmake --preset cuda -DCMAKE_CUDA_COMPILER="$NVCC" -DTANDEM_PYTHON="$PY" -DTANDEM_TEST_MODEL="$MODEL" \
    -DTANDEM_SHARED="$TANDEM_SHARED" >/dev/null
  cmake --build build/cuda -j "$JOBS" --target tandem_cli cuda_backend_test
  build/cuda/tandem devices | tee build/cuda/devices.txt
  grep -q "^gpu" build/cuda/devices.txt
  # The CUDA op tests: on a GPU machine they run; here each says "skipped: no CUDA device"
  # (device-free cases, e.g. error reporting, still run and must pass). The log shows how
  # many ran and why the others skipped; with a GPU listed, a no-device skip is a failure.
  cuda_log=build/cuda/cuda_backend_test.log
  cuda_rc=0
  build/cuda/tests/backend/cuda/cuda_backend_test > "$cuda_log" 2>&1 || cuda_rc=$?
  gtest_summary "$cuda_log" "CUDA op tests"
  if grep -q "^gpu [0-9]" build/cuda/devices.txt && grep -q "skipped: no CUDA device" "$cuda_log"; then
    echo "test: a GPU is listed but CUDA tests skipped for want of one" >&2
    exit 1
  fi
  [ "$cuda_rc" = 0 ] || { tail -n 60 "$cuda_log"; echo "test: cuda_backend_test failed (exit $cuda_rc)" >&2; exit 1; }
elif [ "${TANDEM_REQUIRE_CUDA_BUILD:-0}" = 1 ]; then
  echo "test: nvcc not found but TANDEM_REQUIRE_CUDA_BUILD=1" >&2
  exit 1
else
  echo "SKIPPED LOUDLY: nvcc not found, CUDA backend not built"
fi

step "fuzz: GGUF parser ${TANDEM_FUZZ_SECONDS:-60} s, tokenizer, chat templates, the server's parsers and grammars ${TANDEM_FUZZ_TEXT_SECONDS:-30} s each"
cmake --preset fuzz >/dev/null
cmake --build build/fuzz -j "$JOBS" --target gguf_parse_fuzz tokenizer_fuzz jinja_fuzz chat_api_fuzz grammar_fuzz
seeds="build/fuzz/seeds"
rm -rf "$seeds" build/fuzz/corpus build/fuzz/corpus-tok build/fuzz/corpus-jinja build/fuzz/corpus-api build/fuzz/corpus-grammar
mkdir -p "$seeds" build/fuzz/corpus build/fuzz/corpus-tok build/fuzz/corpus-jinja build/fuzz/corpus-api build/fuzz/corpus-grammar
cp build/release/gguf-samples/*.gguf "$seeds/"
for f in "$TANDEM_SHARED"/data/vocab/*.gguf "$MODEL"; do
  head -c 65536 "$f" > "$seeds/$(basename "$f").head"   # real headers, cut where max_len cuts
done
# fuzz NAME ARGS...: runs one fuzzer; prints its final stats, or, when it fails (a crash, a
# sanitizer report, a leak, a timeout: libFuzzer exits non-zero), the report with the
# failing input in base64 and the stack, and stops the suite.
fuzz() {
  local name="$1" log="build/fuzz/$1.log"
  shift
  rm -f "build/fuzz/$name"-crash-* "build/fuzz/$name"-timeout-* "build/fuzz/$name"-leak-* "build/fuzz/$name"-oom-*
  if "build/fuzz/$name" "$@" -artifact_prefix="build/fuzz/$name-" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 6 "$log"
  else
    echo "FAILED: $name (its log: $log)"
    local at
    at=$(grep -n -m1 -E 'ALARM|deadly signal|==[0-9]+==ERROR|ERROR: libFuzzer' "$log" | cut -d: -f1 || true)
    sed -n "${at:-1},+45p" "$log" | cut -c1-400
    grep -E '^Base64: |Test unit written' "$log" || true
    exit 1
  fi
}
fuzz gguf_parse_fuzz build/fuzz/corpus "$seeds" -max_len=65536 -rss_limit_mb=4096 -max_total_time="${TANDEM_FUZZ_SECONDS:-60}"
TANDEM_FUZZ_VOCAB=build/release/tokenizer/qwen3-vocab.gguf fuzz tokenizer_fuzz build/fuzz/corpus-tok tests/data/tokenizer \
  -max_len=4096 -rss_limit_mb=4096 -max_total_time="${TANDEM_FUZZ_TEXT_SECONDS:-30}"
fuzz jinja_fuzz build/fuzz/corpus-jinja "$TANDEM_SHARED/data/templates" -max_len=16384 -rss_limit_mb=4096 -timeout=10 \
  -max_total_time="${TANDEM_FUZZ_TEXT_SECONDS:-30}"
fuzz chat_api_fuzz build/fuzz/corpus-api tests/data/chat_api -max_len=4096 -rss_limit_mb=4096 -timeout=10 \
  -max_total_time="${TANDEM_FUZZ_TEXT_SECONDS:-30}"
fuzz grammar_fuzz build/fuzz/corpus-grammar tests/data/grammar -max_len=4096 -rss_limit_mb=4096 -timeout=10 \
  -max_total_time="${TANDEM_FUZZ_TEXT_SECONDS:-30}"
echo
echo "test: all passed"
