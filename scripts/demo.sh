#!/usr/bin/env bash
# Set everything up, fetch the default models (qwen2.5-coder-0.5b draft, qwen2.5-coder-1.5b target)
# and solve a sample GSM8K question by step-level speculation. Extra arguments go to `arbitrage solve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
QUESTION="Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"
exec .venv/bin/arbitrage solve "$QUESTION" "$@"
