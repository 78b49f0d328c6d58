"""How well step scores tell good real steps from bad ones, on steps labelled by their outcome.

Reads collected step pairs with grounded labels (``arbitrage collect``, default ``--labels outcome``):
each row holds, for one prefix, the draft's step z_d and the target's step z_t, each continued greedily
to an answer and graded against the gold answer (``outcome_d``, ``outcome_t``), the PRM's scores of
both (``s_d``, ``s_t``, computed at collection) and the target's verification of z_d (``t_*``, ``gsi``).

1. Writes the real steps as a step-labelled PRM set, ``data/prm_eval/real.jsonl`` (label 1: continuing
   from the step reaches the gold answer; kinds ``real-draft`` and ``real-target``; identical candidates
   once), which ``arbitrage eval-prm`` reads with the other parts.
2. Measures, with 95% intervals from a bootstrap over questions:
   - the PRM on real steps: AUROC of the stored reward against the outcome label (draft and target
     steps together, and draft steps alone);
   - every candidate score for routing, on draft steps: AUROC against "the draft's step does not reach
     the answer" (step quality) and against ``y_outcome`` (the target's step does better than the
     draft's: the label routing wants, escalating helps). Scores are oriented so that higher means
     "escalate". Each score's AUROC against step quality is also compared with the PRM's (RSD's
     signal) on the same steps: the difference with a paired interval.

Writes ``OUT/real_steps.json`` and ``OUT/real_steps.png`` and prints a table::

    python benchmarks/real_steps.py                                  # data/collect/gsm8k-train-v2
    python benchmarks/real_steps.py --data data/collect/gsm8k-train-v2 --out /tmp/real
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "collect" / "gsm8k-train-v2"
OUT = ROOT / "benchmarks" / "results" / "real_steps"
PRM_SET = ROOT / "data" / "prm_eval" / "real.jsonl"
RESAMPLES = 2000


# Routing scores on a draft step, higher = "escalate" (the target should rewrite it).
SCORES: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "PRM reward of z_d (low)": lambda r: -r["s_d"],
    "GSI: mean log π_t − log π_d (low)": lambda r: None if r["gsi"] is None else -r["gsi"],
    "target mean token logprob (low)": lambda r: (
        None if r["t_mean_logprob"] is None else -r["t_mean_logprob"]
    ),
    "target min token logprob (low)": lambda r: None if r["t_min_logprob"] is None else -r["t_min_logprob"],
    "share of tokens where the target's greedy choice differs": lambda r: (
        None if r["t_agreement"] is None else 1.0 - r["t_agreement"]
    ),
    "first divergence (early)": lambda r: (
        None
        if r["t_tokens"] is None
        else -(r["t_first_divergence"] if r["t_first_divergence"] is not None else r["t_tokens"])
        / max(r["t_tokens"], 1)
    ),
    "draft mean token logprob (low)": lambda r: (
        None if not r["draft_logprobs"] else -float(np.mean(r["draft_logprobs"]))
    ),
    "draft min token logprob (low)": lambda r: None if not r["draft_logprobs"] else -min(r["draft_logprobs"]),
}


BASELINE = "PRM reward of z_d (low)"  # RSD's signal: every other score is compared with it, paired


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    from arbitrage.prm.evaluate import auroc as _auroc

    return _auroc(scores, labels)


def grouped_auroc(scores: list[float], labels: list[int], groups: list[str]) -> dict[str, Any]:
    """AUROC with a 95% percentile interval from resampling whole questions."""
    s, y, g = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int), np.asarray(groups)
    point = auroc(s, y)
    ids = np.unique(g)
    members = {q: np.nonzero(g == q)[0] for q in ids}
    rng = np.random.default_rng(0)
    values = []
    for _ in range(RESAMPLES):
        idx = np.concatenate([members[q] for q in rng.choice(ids, size=len(ids))])
        value = auroc(s[idx], y[idx])
        if value is not None:
            values.append(value)
    low, high = np.percentile(values, [2.5, 97.5]).tolist() if values else (None, None)
    return {"auroc": point, "ci": [low, high], "n": len(s), "positives": int(y.sum()),
            "questions": len(ids)}  # fmt: skip


def grouped_auroc_difference(
    first: list[float], second: list[float], labels: list[int], groups: list[str]
) -> dict[str, Any]:
    """AUROC(first) − AUROC(second) on the same steps, with a paired 95% interval (questions resampled)."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    y, g = np.asarray(labels, dtype=int), np.asarray(groups)
    auc_a, auc_b = auroc(a, y), auroc(b, y)
    point = None if auc_a is None or auc_b is None else auc_a - auc_b
    ids = np.unique(g)
    members = {q: np.nonzero(g == q)[0] for q in ids}
    rng = np.random.default_rng(0)
    values = []
    for _ in range(RESAMPLES):
        idx = np.concatenate([members[q] for q in rng.choice(ids, size=len(ids))])
        va, vb = auroc(a[idx], y[idx]), auroc(b[idx], y[idx])
        if va is not None and vb is not None:
            values.append(va - vb)
    low, high = np.percentile(values, [2.5, 97.5]).tolist() if values else (None, None)
    return {"difference": point, "ci": [low, high], "n": len(y)}


def gold_answers() -> dict[str, str]:
    from arbitrage.evaluation.datasets import load_problems

    _, problems = load_problems("gsm8k-train", None, None, None, None, 0, None)
    return {p.question: p.answer for p in problems}


def labelled_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The real steps as LabelledStep JSON lines (label from the outcome; identical candidates once)."""
    gold = gold_answers()
    out, seen = [], set()
    for r in rows:
        for kind, text, outcome, reward in (("real-draft", r["z_d"], r["outcome_d"], r["s_d"]),
                                            ("real-target", r["z_t"], r["outcome_t"], r["s_t"])):  # fmt: skip
            key = (r["question_id"], r["step_index"], text)
            if key in seen:
                continue
            seen.add(key)
            out.append({
                "id": f"{r['question_id']}/s{r['step_index']}/{kind}",
                "problem_id": r["question_id"], "question": r["question"], "prefix": list(r["context"]),
                "step": text, "label": int(outcome >= 0.5), "kind": kind,
                "gold_answer": gold.get(r["question"], ""),
                "meta": {"outcome": outcome, "continuation_model": r["continuation_model"],
                         "prm": r["prm"], "prm_reward": reward},
            })  # fmt: skip
    return out


def measure(rows: list[dict[str, Any]], steps: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {"pairs": len(rows), "questions": len({r["question_id"] for r in rows})}
    result["prm_real_steps"] = grouped_auroc(
        [s["meta"]["prm_reward"] for s in steps],
        [s["label"] for s in steps],
        [s["problem_id"] for s in steps],
    )
    drafts = [s for s in steps if s["kind"] == "real-draft"]
    result["prm_real_draft_steps"] = grouped_auroc(
        [s["meta"]["prm_reward"] for s in drafts],
        [s["label"] for s in drafts],
        [s["problem_id"] for s in drafts],
    )
    result["label_rates"] = {
        "draft_step_reaches_answer": float(np.mean([r["outcome_d"] >= 0.5 for r in rows])),
        "target_step_reaches_answer": float(np.mean([r["outcome_t"] >= 0.5 for r in rows])),
        "y_outcome": float(np.mean([r["y_outcome"] for r in rows])),
        "identical_candidates": float(np.mean([r["z_d"] == r["z_t"] for r in rows])),
    }
    routing: dict[str, Any] = {}
    for name, score in SCORES.items():
        raw = [(score(r), r) for r in rows]
        usable = [(v, r) for v, r in raw if v is not None and np.isfinite(v)]
        if not usable:
            continue
        values = [v for v, _ in usable]
        groups = [r["question_id"] for _, r in usable]
        wrong = [int(r["outcome_d"] < 0.5) for _, r in usable]
        routing[name] = {
            "vs_draft_step_wrong": grouped_auroc(values, wrong, groups),
            "vs_target_better": grouped_auroc(values, [int(r["y_outcome"]) for _, r in usable], groups),
        }
        if name != BASELINE:
            prm = [-float(r["s_d"]) for _, r in usable]  # the baseline score, set on every collected row
            routing[name]["minus_prm_vs_draft_step_wrong"] = grouped_auroc_difference(
                values, prm, wrong, groups
            )
    result["routing_scores"] = routing
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["routing_scores"])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    for offset, key, color in (
        (-0.18, "vs_draft_step_wrong", "tab:blue"),
        (0.18, "vs_target_better", "tab:orange"),
    ):
        for i, name in enumerate(names):
            m = result["routing_scores"][name][key]
            if m["auroc"] is None:
                continue
            low, high = m["ci"]
            ax.errorbar(m["auroc"], i + offset, xerr=[[m["auroc"] - low], [high - m["auroc"]]], fmt="o",
                        color=color, label=key if i == 0 else None)  # fmt: skip
    ax.axvline(0.5, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("AUROC (95% CI, bootstrap over questions)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(
        f"Routing scores on {result['pairs']} real draft steps ({result['questions']} questions)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    from arbitrage.router.data import read_pairs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="collection folder with outcome labels")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--prm-set", type=Path, default=PRM_SET, help="where to write the real-step PRM set")
    args = ap.parse_args()
    rows = [
        r for r in read_pairs(args.data) if r.get("outcome_d") is not None and r.get("outcome_t") is not None
    ]
    if not rows:
        raise SystemExit(f"error: no rows with outcome labels in {args.data}")
    steps = labelled_rows(rows)
    args.prm_set.parent.mkdir(parents=True, exist_ok=True)
    args.prm_set.write_text("".join(json.dumps(s) + "\n" for s in steps))
    result = {"data": str(args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data),
              "prm_set_rows": len(steps), **measure(rows, steps)}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real_steps.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "real_steps.png")

    def fmt(m: dict[str, Any]) -> str:
        if m["auroc"] is None:
            return "n/a"
        return f"{m['auroc']:.3f} [{m['ci'][0]:.2f}, {m['ci'][1]:.2f}] (n={m['n']}, pos={m['positives']})"

    print(
        f"{result['pairs']} pairs from {result['questions']} questions; {len(steps)} real steps -> {args.prm_set}"
    )
    print(f"label rates: {json.dumps({k: round(v, 3) for k, v in result['label_rates'].items()})}")
    print(f"PRM AUROC on real steps: {fmt(result['prm_real_steps'])}")
    print(f"PRM AUROC on real draft steps: {fmt(result['prm_real_draft_steps'])}")

    def diff(m: dict[str, Any] | None) -> str:
        if m is None or m["difference"] is None:
            return "-"
        return f"{m['difference']:+.3f} [{m['ci'][0]:+.2f}, {m['ci'][1]:+.2f}]"

    print(
        "| routing score (higher = escalate) | AUROC vs draft step wrong | minus PRM's, paired "
        "| AUROC vs target better |"
    )
    print("| --- | --- | --- | --- |")
    for name, m in result["routing_scores"].items():
        print(
            f"| {name} | {fmt(m['vs_draft_step_wrong'])} | {diff(m.get('minus_prm_vs_draft_step_wrong'))} "
            f"| {fmt(m['vs_target_better'])} |"
        )


if __name__ == "__main__":
    main()
