"""Rebuild the step-labelled PRM evaluation set in data/prm_eval/ (see data/prm_eval/README.md).

    python benchmarks/build_prm_eval.py                 # both parts (the draft part runs two models)
    python benchmarks/build_prm_eval.py --skip-draft    # only the corrupted gold steps (instant)

The corrupted part is a pure function of GSM8K train and the seed. The draft part runs the draft and
the target model greedily; it is resumable (rows already in draft.jsonl are kept and their problems
skipped) and deterministic up to llama.cpp's floating-point behaviour on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

from arbitrage.backends.loader import load_generator
from arbitrage.labelling.evalset import build_draft_rows
from arbitrage.prm.evalset import LabelledStep, build_corrupted, load_rows, write_rows

ROOT = Path(__file__).resolve().parents[1]
GSM8K_TRAIN = ROOT.parent / "shared" / "datasets" / "gsm8k_train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gsm8k", type=Path, default=GSM8K_TRAIN)
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "prm_eval")
    ap.add_argument("--problems", type=int, default=30, help="problems for the corrupted part")
    ap.add_argument("--draft-problems", type=int, default=13, help="problems for the draft part")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draft", default="qwen2.5-coder-0.5b")
    ap.add_argument("--target", default="qwen2.5-coder-1.5b")
    ap.add_argument("--skip-draft", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    problems = [json.loads(line) for line in args.gsm8k.open()]
    corrupted = build_corrupted(problems, args.problems, seed=args.seed)
    write_rows(args.out / "corrupted.jsonl", corrupted)
    logging.info("corrupted: %d rows from %d problems", len(corrupted), args.problems)
    if args.skip_draft:
        return

    # draft part: other problems of the same split, drawn with another seed
    used = {row.problem_id for row in corrupted}
    order = [i for i in range(len(problems)) if f"gsm8k-train-{i:04d}" not in used]
    random.Random(args.seed + 1).shuffle(order)
    chosen = order[: args.draft_problems]
    path = args.out / "draft.jsonl"
    done: list[LabelledStep] = load_rows(path) if path.is_file() and path.stat().st_size else []
    finished = {row.problem_id for row in done}
    todo = [(i, problems[i]) for i in chosen if f"gsm8k-train-{i:04d}" not in finished]
    draft, target = load_generator(args.draft), load_generator(args.target)
    try:

        def save(row: LabelledStep) -> None:
            done.append(row)
            write_rows(path, done)
            logging.info("draft row %d/%d: %s label=%d", len(done), len(chosen), row.id, row.label)

        build_draft_rows(draft, target, todo, seed=args.seed, on_row=save)
    finally:
        draft.close()
        target.close()


if __name__ == "__main__":
    main()
