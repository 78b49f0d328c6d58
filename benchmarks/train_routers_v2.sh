#!/usr/bin/env bash
# The routers of the informative-routing work, and the table that chooses between them (run from the
# repository root):
#   bash benchmarks/train_routers_v2.sh [DATA] [LABEL]
#   DATA: step pairs with the target's verification and outcome labels (default data/collect/gsm8k-train-v2)
#   LABEL: what the target-side router trains on, prm or outcome (default outcome, the grounded label)
# Writes benchmarks/results/router_v2/eval_router.{md,json}: draft-only, target-side and combined features
# routers and the raw verification scores, each against the PRM's Δ and the outcome advantage, over 5
# question-grouped folds (and routers trained on Δ scored against the outcome, to choose the label);
# then trains on all of DATA the paper's router (draft-only inputs, PRM labels) into data/routers/draft
# and the combined router (draft + target inputs, LABEL) into data/routers/both, both committed for
# `python benchmarks/gsm8k_sweep.py --router data/routers/draft --router-variant both=data/routers/both`.
# The combined router is also copied into src/arbitrage/data/router, the router installed with the package
# (the router policy's default when no --router is given).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/collect/gsm8k-train-v2}
LABEL=${2:-outcome}
OUT=benchmarks/results/router_v2
if [ -x .venv/bin/arbitrage ]; then CLI=(.venv/bin/arbitrage); else CLI=("${PYTHON:-python}" -m arbitrage.cli.main); fi
mkdir -p "$OUT" data/routers
"${CLI[@]}" eval-router "$DATA" --compare-inputs --folds 5 --out "$OUT"
"${CLI[@]}" train-router "$DATA" --inputs draft --label prm --out data/routers/draft --force \
  | tee "$OUT/train_draft.txt"
"${CLI[@]}" train-router "$DATA" --inputs both --label "$LABEL" --out data/routers/both --force \
  | tee "$OUT/train_both.txt"
for name in draft both; do cp "data/routers/$name/router.json" "$OUT/router_$name.json"; done
rm -rf src/arbitrage/data/router && cp -r data/routers/both src/arbitrage/data/router
