"""Synthetic oracle-labelled step pairs whose advantage depends on known signals (router tests).

Each step has a hidden difficulty ``d`` in [0, 1]. The draft's token logprobs spread wider and its
entropies rise with ``d``; with ``signal="features"`` the advantage is ``Δ = 0.5 (d − 0.6) + noise``,
so a router that reads the logprob/entropy features can rank steps by Δ. With ``signal="history"``
Δ depends only on whether the previous step was written by the target (which is random), so only a
history-annotated router can learn it. With ``signal="text"`` the draft hedges ("hmm wait maybe") and
gets its sum wrong exactly when ``d > 0.6``, a signal in the text alone (for the lm router). ``shuffle=True`` permutes the labels across rows: a control
where nothing is learnable.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from arbitrage.router.data import StepPair, write_shard


def synthetic_pairs(
    questions: int = 200, steps: int = 6, seed: int = 0, signal: str = "features", shuffle: bool = False
) -> list[StepPair]:
    rng = np.random.default_rng(seed)
    rows: list[StepPair] = []
    for q in range(questions):
        question = f"Question {q}: Ann has {q + 3} apples and buys {q % 7 + 2} more. How many now?"
        context: list[str] = []
        history: list[str] = []
        for i in range(steps):
            d = float(rng.uniform())
            n = int(rng.integers(8, 40))
            logprobs = [-abs(float(x)) for x in rng.normal(0.0, 0.1 + 1.5 * d, n)]
            entropies = [abs(float(x)) for x in rng.normal(0.2 + 1.8 * d, 0.3, n)]
            a, b = int(rng.integers(1, 50)), int(rng.integers(1, 50))
            z_d = f"Step {i + 1}: we add {a} + {b} = {a + b} apples."
            if signal == "text" and d > 0.6:
                z_d = f"Step {i + 1}: hmm wait maybe {a} + {b} = {a + b + 1} apples."
            if signal in ("features", "text"):
                delta = 0.5 * (d - 0.6) + float(rng.normal(0.0, 0.08))
            elif signal == "history":
                last_target = bool(history) and history[-1] == "target"
                delta = (0.25 if last_target else -0.15) + float(rng.normal(0.0, 0.08))
            else:
                raise ValueError(signal)
            s_d = float(np.clip(0.6 - delta / 2, 0.0, 1.0))
            s_t = float(np.clip(s_d + delta, 0.0, 1.0))
            delta = s_t - s_d
            rows.append(
                StepPair(
                    question_id=f"synth/{q}", step_index=i, question=question, context=list(context),
                    history=list(history), z_d=z_d, z_t=f"Step {i + 1}: {a} + {b} = {a + b}.", s_d=s_d, s_t=s_t,
                    delta=delta, y=int(delta > 0), s_t_samples=[s_t], draft_logprobs=logprobs,
                    draft_entropies=entropies, draft_tokens=n, target_tokens=n, draft_finish="step",
                    draft_seconds=0.1, target_seconds=0.3, prm_seconds=0.05, draft_model="draft-synth",
                    target_model="target-synth", prm="prm-synth",
                )
            )  # fmt: skip
            context.append(z_d)
            history.append("target" if rng.uniform() < 0.4 else "draft")
    if shuffle:
        order = rng.permutation(len(rows))
        labels = [(rows[j].s_d, rows[j].s_t, rows[j].delta, rows[j].y) for j in order]
        rows = [
            dataclasses.replace(r, s_d=s_d, s_t=s_t, delta=delta, y=y, s_t_samples=[s_t])
            for r, (s_d, s_t, delta, y) in zip(rows, labels, strict=True)
        ]
    return rows


def write_pairs(folder: Path, rows: list[StepPair], shards: int = 2) -> Path:
    """Write rows as ``shards`` Parquet shards (collection folders usually hold several)."""
    size = -(-len(rows) // shards)
    for i in range(0, len(rows), size):
        write_shard(rows[i : i + size], folder)
    return folder
