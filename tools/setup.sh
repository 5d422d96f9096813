#!/usr/bin/env bash
# Installs what tandem needs on Debian 12 (build tools, C++ libraries, clang for the
# fuzzer, headless Chromium and its driver for the chat page's browser test) and a Python virtualenv (.venv) with the test oracles from PyPI. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential cmake ninja-build ccache pkg-config libfmt-dev libcli11-dev
  nlohmann-json3-dev libpcre2-dev libcpp-httplib-dev libgtest-dev libgmock-dev libsimde-dev clang-14 libclang-rt-14-dev python3 python3-venv
  python3-pip curl ca-certificates libcurl4-openssl-dev libssl-dev chromium chromium-driver)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

# Python oracles (tests and tools only). Pinned so results are reproducible.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-test.txt
