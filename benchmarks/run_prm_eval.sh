#!/usr/bin/env bash
# The PRM measurement behind benchmarks/results/prm_eval/ (run from the repository root; resumable).
# Every scorer scores every row of data/prm_eval/*.jsonl; the generating judge ("recompute") only the
# first rows of each file, written to a separate file since its numbers cover fewer rows.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results/prm_eval
run() { .venv/bin/arbitrage eval-prm --out "$OUT/$1" --resume "${@:2}"; }
[ -x .venv/bin/arbitrage ] || run() { PYTHONPATH=src python -m arbitrage.cli.main eval-prm --out "$OUT/$1" --resume "${@:2}"; }

run results.json \
  --prm arith \
  --prm "judge:qwen2.5-coder-1.5b#basic" --prm "judge:qwen2.5-coder-1.5b#strict" \
  --prm "judge:qwen2.5-coder-1.5b#fewshot" \
  --prm "judge:qwen2.5-coder-0.5b#basic" --prm "judge:qwen2.5-coder-0.5b#strict" \
  --prm "judge:qwen2.5-coder-0.5b#fewshot" \
  --prm "judge+arith:qwen2.5-coder-1.5b#strict" --prm "judge+arith:qwen2.5-coder-1.5b#fewshot" \
  --prm "judge+arith:qwen2.5-coder-0.5b#fewshot" \
  --prm "judge:smollm2-135m#strict" --prm "judge:gemma3-270m#strict"
run results_recompute.json --limit 30 \
  --prm arith --prm "judge:qwen2.5-coder-1.5b#fewshot" --prm "judge:qwen2.5-coder-1.5b#recompute"
