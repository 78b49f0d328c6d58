#!/usr/bin/env bash
# Set everything up, fetch the small test models, lint, type-check and run the whole test suite
# (unit tests and the slow integration tests on real models). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== fetching test models"
.venv/bin/arbitrage models fetch smollm2-135m gemma3-270m
echo "== ruff"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
