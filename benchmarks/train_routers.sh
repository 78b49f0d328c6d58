#!/usr/bin/env bash
# Train and evaluate the routers behind the README's router tables (run from the repository root).
#   bash benchmarks/train_routers.sh [DATA]   (default DATA: data/collect/gsm8k-train)
# Writes router folders to runs/routers/ (the logistic features router is also copied to
# data/routers/features, committed, for sweeps) and the tables to benchmarks/results/router/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/collect/gsm8k-train}
OUT=benchmarks/results/router
ROUTERS=runs/routers
if [ -x .venv/bin/arbitrage ]; then CLI=(.venv/bin/arbitrage); else CLI=("${PYTHON:-python}" -m arbitrage.cli.main); fi
mkdir -p "$OUT" "$ROUTERS" data/routers

train() {  # name, options...
  local name=$1; shift
  echo "== train-router $name" >&2
  "${CLI[@]}" train-router "$DATA" --out "$ROUTERS/$name" --force "$@" | tee "$OUT/train_$name.txt"
}

train features --kind features
train features-gbt --kind features --estimator gbt
# the paper's router on a CPU: SmolLM2-135M with its backbone frozen and the head trained on cached
# features (full fine-tuning of even 135M parameters takes hours per epoch on 2 cores)
train lm-smollm2-head --kind lm --backbone smollm2-135m --train-layers 0 --max-length 256 --epochs 3

"${CLI[@]}" eval-router "$DATA" \
  --router "$ROUTERS/features" --router "$ROUTERS/features-gbt" --router "$ROUTERS/lm-smollm2-head" \
  --ablation --kind features --out "$OUT"

# the logistic features router (numpy weights, no pickle) is small enough to commit for sweeps
rm -rf data/routers/features && cp -r "$ROUTERS/features" data/routers/features
for name in features features-gbt lm-smollm2-head; do
  cp "$ROUTERS/$name/router.json" "$OUT/router_$name.json"
done
