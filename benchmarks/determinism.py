"""Greedy steps and PRM scores as functions of the text alone: the same problem solved after different
KV-cache histories, and byte-identical step pairs scored by the judge, per llama.cpp determinism mode.

Two checks, each run once per mode (``aligned``: canonical 32-token chunks, this build's default;
``off``: reuse whatever prefix the cache holds, as before):

1. **Greedy solutions.** The target solves the first N GSM8K test problems target-only twice with one
   model instance: in order, then in reverse order with one step of another problem written before
   each solve (so the cache holds something else). A problem whose two solutions differ in text is a
   mismatch. Before the fix the sweep and a live run disagreed on 7 of 20 such solutions.
2. **Identical pairs.** Collected step pairs whose draft and target steps are byte-identical
   (``data/collect/gsm8k-train``): the judge scores the draft candidate, then the target candidate
   (the same text, the cache now holding the first), as collection did; Δ = s_t − s_d must be 0.
   Before the fix: Δ ≠ 0 on all 107 such pairs (mean |Δ| 0.010).

Resumable (one JSON line per result in ``OUT/records.jsonl``); each mode runs in its own process with
``ARBITRAGE_LLAMA_DETERMINISM`` set. Writes ``OUT/determinism.json`` and ``OUT/determinism.png`` and
prints a summary::

    python benchmarks/determinism.py                     # 20 problems, 20 pairs, modes aligned and off
    python benchmarks/determinism.py --problems 5 --pairs 5 --modes aligned
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "determinism"
TARGET = "qwen2.5-coder-1.5b"
PRM = "judge+arith:qwen2.5-coder-1.5b#basic"  # the default PRM
COLLECTED = ROOT / "data" / "collect" / "gsm8k-train"


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def identical_pairs(limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` collected pairs whose two candidates are byte-identical."""
    from arbitrage.router.data import read_pairs

    rows = [r for r in read_pairs(COLLECTED) if r["z_d"] == r["z_t"]]
    return rows[:limit]


def worker(mode: str, problems: int, pairs: int, out: Path, checks: set[str]) -> None:
    """One mode's checks in this process (ARBITRAGE_LLAMA_DETERMINISM is set by the caller)."""
    from rich.progress import track

    from arbitrage.backends.base import StepContext, StepParams
    from arbitrage.backends.loader import GeneratorOptions, load_generator
    from arbitrage.engine import Engine, EngineConfig
    from arbitrage.evaluation.datasets import load_problems
    from arbitrage.policies import build_policy
    from arbitrage.prm.registry import ScorerOptions, load_scorer

    records = out / "records.jsonl"
    done = {(r["mode"], r["check"], r["pass"], r["id"]) for r in read_records(records)}
    _, items = load_problems("gsm8k", None, None, None, None, 0, problems)
    config = EngineConfig(step=StepParams(max_step_tokens=256), max_steps=40, max_total_tokens=2048)
    target = load_generator(TARGET, GeneratorOptions(n_ctx=4096)) if "greedy" in checks else None
    try:
        assert target is None or getattr(target, "determinism", mode) == mode, (target, mode)
        orders = (
            {}
            if target is None
            else {"in_order": list(range(len(items))), "reversed_polluted": list(reversed(range(len(items))))}
        )
        for name, order in orders.items():
            assert target is not None
            engine = Engine(target, target, build_policy("target"), config)
            for i in track(order, description=f"{mode}: {name}"):
                key = (mode, "greedy", name, items[i].id)
                if key in done:
                    continue
                if name == "reversed_polluted":  # another problem's step in the cache first
                    other = items[(i + 1) % len(items)]
                    target.generate_step(StepContext(other.question, ()), config.step)
                trace = engine.solve(items[i].question)
                append(records, {"mode": mode, "check": "greedy", "pass": name, "id": items[i].id,
                                 "text": trace.solution})  # fmt: skip
    finally:
        if target is not None:
            target.close()
    if "pairs" not in checks:
        return
    scorer = load_scorer(PRM, ScorerOptions(n_ctx=4096))
    try:
        for row in track(identical_pairs(pairs), description=f"{mode}: identical pairs"):
            key = (mode, "pair", "draft_then_target", f"{row['question_id']}#{row['step_index']}")
            if key in done:
                continue
            prefix = list(row["context"])
            s_d = scorer.score(row["question"], [*prefix, row["z_d"]]).rewards[-1]
            s_t = scorer.score(row["question"], [*prefix, row["z_t"]]).rewards[-1]
            append(records, {"mode": mode, "check": "pair", "pass": "draft_then_target", "id": key[3],
                             "s_d": s_d, "s_t": s_t, "delta": s_t - s_d})  # fmt: skip
    finally:
        scorer.close()


def summarise(out: Path, modes: list[str]) -> dict[str, Any]:
    records = read_records(out / "records.jsonl")
    summary: dict[str, Any] = {"target": TARGET, "prm": PRM, "modes": {}}
    for mode in modes:
        greedy: dict[str, dict[str, str]] = {}
        for r in records:
            if r["mode"] == mode and r["check"] == "greedy":
                greedy.setdefault(r["id"], {})[r["pass"]] = r["text"]
        both = {k: v for k, v in greedy.items() if len(v) == 2}
        mismatched = sorted(k for k, v in both.items() if v["in_order"] != v["reversed_polluted"])
        deltas = [r["delta"] for r in records if r["mode"] == mode and r["check"] == "pair"]
        summary["modes"][mode] = {
            "problems_compared": len(both),
            "greedy_mismatches": len(mismatched),
            "mismatched_ids": mismatched,
            "identical_pairs": len(deltas),
            "nonzero_delta": sum(1 for d in deltas if d != 0.0),
            "mean_abs_delta": sum(abs(d) for d in deltas) / len(deltas) if deltas else None,
            "max_abs_delta": max((abs(d) for d in deltas), default=None),
        }
    return summary


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(summary["modes"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, (key, total, title) in zip(
        axes,
        [("greedy_mismatches", "problems_compared", "greedy solutions differing by history"),
         ("nonzero_delta", "identical_pairs", "identical step pairs with Δ ≠ 0")],
        strict=True,
    ):  # fmt: skip
        values = [summary["modes"][m][key] for m in modes]
        totals = [summary["modes"][m][total] for m in modes]
        ax.bar(modes, values, color=["tab:green" if v == 0 else "tab:red" for v in values])
        for x, (v, t) in enumerate(zip(values, totals, strict=True)):
            ax.text(x, v, f"{v} of {t}", ha="center", va="bottom")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max([*totals, 1]) * 1.1)
    fig.suptitle(f"llama.cpp determinism modes ({summary['target']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--modes", default="aligned,off")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--checks", default="greedy,pairs", help="which checks to run: greedy, pairs or both")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker(args.worker, args.problems, args.pairs, args.out, set(args.checks.split(",")))
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        cmd = [sys.executable, __file__, "--worker", mode, "--problems", str(args.problems),
               "--pairs", str(args.pairs), "--out", str(args.out), "--checks", args.checks]  # fmt: skip
        env = {**os.environ, "ARBITRAGE_LLAMA_DETERMINISM": mode}
        if subprocess.run(cmd, env=env).returncode != 0:
            sys.exit(f"the {mode} worker failed")
    summary = summarise(args.out, modes)
    (args.out / "determinism.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, args.out / "determinism.png")
    for mode, s in summary["modes"].items():
        print(f"{mode:8s} greedy: {s['greedy_mismatches']} of {s['problems_compared']} solutions differ "
              f"by cache history; identical pairs: Δ ≠ 0 on {s['nonzero_delta']} of {s['identical_pairs']} "
              f"(max |Δ| {s['max_abs_delta']})")  # fmt: skip


if __name__ == "__main__":
    main()
