#!/usr/bin/env bash
# The PRM measurement behind benchmarks/results/prm_eval/ (run from the repository root; resumable).
# A judge+arith run also reports the plain judge from the same calls (eval-prm lists both), so each
# judge prompt is run once. The generating judge ("recompute") scores only the first rows of each file
# (--limit), into its own file, since its numbers cover fewer rows.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results/prm_eval
if [ -x .venv/bin/arbitrage ]; then CLI=(.venv/bin/arbitrage); else CLI=("${PYTHON:-python}" -m arbitrage.cli.main); fi
run() { PYTHONPATH=src "${CLI[@]}" eval-prm --out "$OUT/$1" --resume "${@:2}"; }

run results.json \
  --prm arith \
  --prm "judge+arith:qwen2.5-coder-1.5b#basic" \
  --prm "judge+arith:qwen2.5-coder-1.5b#strict" \
  --prm "judge+arith:qwen2.5-coder-1.5b#fewshot" \
  --prm "judge+arith:qwen2.5-coder-0.5b#basic" \
  --prm "judge+arith:qwen2.5-coder-0.5b#strict" \
  --prm "judge+arith:qwen2.5-coder-0.5b#fewshot" \
  --prm "judge:smollm2-135m#strict" \
  --prm "judge:gemma3-270m#strict"
run results_recompute.json --limit 30 \
  --prm arith --prm "judge+arith:qwen2.5-coder-1.5b#recompute"
