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
echo "== installing arbitrage (compiles llama-cpp-python on first use; this can take several minutes)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
