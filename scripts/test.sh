#!/usr/bin/env bash
# Set everything up, fetch the small test models, lint, type-check and run the whole test suite
# (unit tests and the slow integration tests on real models). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== fetching test models"
.venv/bin/arbitrage models fetch smollm2-135m gemma3-270m
if [ "${ARBITRAGE_SKIP_VLLM:-0}" != 1 ]; then
  # the real-engine tests (tests/integration/test_vllm.py) need vLLM in its own environment: about
  # 3 minutes and 3.5 GB the first time, seconds once it is there; ARBITRAGE_SKIP_VLLM=1 skips them
  echo "== vLLM for the real-engine tests"
  bash scripts/vllm.sh setup
  export ARBITRAGE_REQUIRE_VLLM=1
fi
echo "== ruff"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
