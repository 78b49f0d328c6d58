#!/usr/bin/env bash
# Idempotent set-up on a machine with Python >= 3.11, pip and a C/C++ compiler:
# a virtual environment in .venv with arbitrage, its test tools, and llama.cpp compiled for this CPU.
# The first run compiles llama-cpp-python (4-13 minutes on 2 cores); pip caches the wheel it builds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # The CPU build (a local file on these machines); GPU users install the torch build they want first.
  echo "== installing torch (CPU build)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
echo "== installing arbitrage (compiles llama-cpp-python on first use; this can take several minutes)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
