#!/usr/bin/env python3
"""Runs gguf_compare.py on every GGUF in $TANDEM_SHARED/data/vocab and on $TANDEM_TEST_MODEL.
Missing data skips loudly (exit 0 with a SKIPPED line) unless TANDEM_REQUIRE_SHARED=1."""
import glob
import os
import subprocess
import sys

binary = sys.argv[1]
required = os.environ.get("TANDEM_REQUIRE_SHARED") == "1"
files = sorted(glob.glob(os.path.join(os.environ.get("TANDEM_SHARED", ""), "data", "vocab", "*.gguf")))
model = os.environ.get("TANDEM_TEST_MODEL", "")
missing = []
if not files:
    missing.append("shared vocab GGUFs (TANDEM_SHARED)")
if model and os.path.exists(model):
    files.append(model)
else:
    missing.append("real model (TANDEM_TEST_MODEL)")
if missing:
    print("SKIPPED LOUDLY: missing " + ", ".join(missing))
    if required:
        sys.exit(1)
if files:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(subprocess.call([sys.executable, os.path.join(here, "gguf_compare.py"), binary] + files))
