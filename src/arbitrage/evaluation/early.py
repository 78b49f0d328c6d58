"""Projected cost of deciding at each point of a step, from collected step pairs (projected, not measured).

Where should a policy decide whether the target writes a step? Before the draft writes (``m = 0``),
after the draft's first ``m`` tokens (a probe the target verifies, or the draft's own confidence on
them), or on the draft's whole step (``m = None``: the ``verify`` policy, the paper's router)? Each
point trades what an escalation wastes against how much the policy knows when it decides. This module
costs every point on collected step pairs (``data/collect/...``: per step the draft's and the target's
token counts, the target's per-token verification of the draft step and its first divergence) under a
per-token cost model, for any escalation decisions; ``benchmarks/early_escalation.py`` feeds it the
decisions of each score at each rate and writes the tables.

A model's seconds (one solve, the steps in order; ``pending``: solution tokens a model has not evaluated
yet, which its next call prefills in the same batch as whatever else it evaluates):

- a decoded token costs ``decode``; ``n`` tokens evaluated in one batch cost ``batch(n)`` (measured per
  batch size: a small batch on a CPU costs about one decode per token, a long prefill far less); every
  target call costs ``call``;
- **target writes** (target-only, or escalated before the draft): ``batch(pending)`` then ``T`` decodes;
- **draft writes its step**: ``batch(pending)`` then ``D`` decodes;
- **probe of m tokens** (``p = min(m, D)``): the draft decodes ``p`` tokens; a target-side score has the
  target verify them, ``batch(pending + p + 1)``; then
  - escalated: the target decodes ``T − kept`` (``kept`` = the verified prefix it agrees with, 0 when it
    did not verify), the draft later prefills the target's step;
  - let go on: the draft writes its whole step again from the same context (``D`` decodes: the probe's
    tokens twice, as the engine does), the target later prefills what it did not verify;
- **whole step** (``m = None``): the probe with ``p = D``, nothing written twice.

The first call of each model also prefills the question's prompt (``prompt_tokens``). Token counts are
per step as collected (a step's figures do not depend on who wrote the steps before it: an
approximation, since the collection followed the oracle's choices).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arbitrage.costs import CostModel, RoleCosts
from arbitrage.errors import ConfigError

FULL_STEP = None  # the decision point "on the draft's whole step"


@dataclass(frozen=True, slots=True)
class BatchCurve:
    """Seconds a model takes to evaluate ``n`` tokens in one batch after its KV cache.

    Linear between measured ``(n, seconds)`` points (the first is ``(1, decode)``), and ``per_token``
    more for each token beyond the last one. Read by :func:`project`.
    """

    points: tuple[tuple[int, float], ...]  # (batch size, seconds), sizes rising, the first 1
    per_token: float  # seconds per token beyond the last point (a long prefill's cost per token)

    def __post_init__(self) -> None:
        sizes = [n for n, _ in self.points]
        if not sizes or sizes[0] != 1 or sizes != sorted(set(sizes)):
            raise ConfigError("a batch curve needs rising batch sizes starting at 1")

    def seconds(self, n: int) -> float:
        """Seconds of a batch of ``n`` tokens (0 for none)."""
        if n <= 0:
            return 0.0
        for (n0, s0), (n1, s1) in zip(self.points, self.points[1:], strict=False):
            if n <= n1:
                return s0 + (s1 - s0) * (n - n0) / (n1 - n0)
        last_n, last_s = self.points[-1]
        return last_s + (n - last_n) * self.per_token

    def scaled(self, factor: float) -> BatchCurve:
        """Every figure times ``factor`` (a faster or slower model of the same shape)."""
        return BatchCurve(tuple((n, s * factor) for n, s in self.points), self.per_token * factor)

    @classmethod
    def from_role(cls, role: RoleCosts, largest_small_batch: int = 8) -> BatchCurve:
        """From a cost model's figures: ``decode + (n − 1) · batch_extra`` up to ``largest_small_batch``
        (``evaluate · n`` where ``batch_extra`` is unknown), ``evaluate`` per token beyond."""
        extra = role.batch_extra if role.batch_extra is not None else role.evaluate
        top = max(role.decode + (largest_small_batch - 1) * extra, role.evaluate * largest_small_batch)
        return cls(((1, role.decode), (largest_small_batch, top)), role.evaluate)

    @classmethod
    def from_kernels(cls, row: Mapping[str, Any], per_token: float) -> BatchCurve:
        """From a row of ``benchmarks/results/llama_kernels/kernels.json`` (``decode_ms``, ``batch_ms``
        by batch size, measured after a cached context) and the cost of a long prefill per token."""
        points = [(1, float(row["decode_ms"]) / 1000)]
        points += sorted((int(n), float(ms) / 1000) for n, ms in row["batch_ms"].items())
        return cls(tuple(points), per_token)


@dataclass(frozen=True, slots=True)
class PairCosts:
    """The per-token costs :func:`project` charges (seconds)."""

    draft_decode: float
    target_decode: float
    target_call: float
    draft_batch: BatchCurve
    target_batch: BatchCurve

    @classmethod
    def from_model(
        cls, costs: CostModel, draft_batch: BatchCurve | None = None, target_batch: BatchCurve | None = None
    ) -> PairCosts:
        return cls(
            draft_decode=costs.draft.decode,
            target_decode=costs.target.decode,
            target_call=costs.target.call,
            draft_batch=draft_batch or BatchCurve.from_role(costs.draft),
            target_batch=target_batch or BatchCurve.from_role(costs.target),
        )

    @property
    def ratio(self) -> float:
        """Draft decode cost over target decode cost (per token)."""
        return self.draft_decode / self.target_decode

    def with_ratio(self, ratio: float) -> PairCosts:
        """The draft's every figure scaled so that its decode costs ``ratio`` of the target's."""
        factor = ratio / self.ratio
        return PairCosts(self.draft_decode * factor, self.target_decode, self.target_call,
                         self.draft_batch.scaled(factor), self.target_batch)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StepFigures:
    """One collected step pair's figures the projection reads."""

    draft_tokens: int  # D: tokens of the draft's step
    target_tokens: int  # T: tokens of the target's step from the same prefix
    verified_tokens: int  # n: the draft step's tokens as the target verified them
    first_divergence: int | None  # first verified token the target would not choose; None: none
    delta: float = 0.0  # PRM advantage Δ = s_target − s_draft
    y: int = 0  # 1[Δ > 0]
    y_outcome: int | None = None  # 1[outcome advantage > 0] (grounded labels), when collected

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> StepFigures:
        divergence = row.get("t_first_divergence")
        verified = row.get("t_tokens")
        return cls(
            draft_tokens=int(row["draft_tokens"]),
            target_tokens=int(row["target_tokens"]),
            verified_tokens=int(verified if verified is not None else row["draft_tokens"]),
            first_divergence=None if divergence is None or divergence < 0 else int(divergence),
            delta=float(row.get("delta") or 0.0),
            y=int(row.get("y") or 0),
            y_outcome=None if row.get("y_outcome") is None else int(row["y_outcome"]),
        )

    def agreed(self, p: int) -> int:
        """Tokens of the first ``p`` verified ones the target agrees with before its first disagreement."""
        p = min(p, self.verified_tokens)
        return p if self.first_divergence is None else min(self.first_divergence, p)


@dataclass(frozen=True, slots=True)
class Projection:
    """Projected seconds of one decision rule over a set of solves (projected, not measured)."""

    seconds: float  # Σ projected seconds of the policy
    target_only_seconds: float  # Σ projected seconds of target-only decoding, same steps
    draft_only_seconds: float  # Σ of draft-only decoding
    steps: int
    escalated: int  # steps the target wrote

    @property
    def speedup(self) -> float:
        """Target-only seconds over the policy's (> 1: faster than the target alone)."""
        return self.target_only_seconds / self.seconds if self.seconds > 0 else math.nan

    @property
    def escalation_rate(self) -> float:
        return self.escalated / self.steps if self.steps else math.nan


Solve = Sequence[StepFigures]  # one solution's steps, in order
Escalate = Callable[[int, int], bool]  # (solve index, step index) -> escalate this step


def project(
    solves: Sequence[Solve],
    escalate: Escalate,
    probe_tokens: int | None,
    costs: PairCosts,
    *,
    target_side: bool = True,
    prompt_tokens: int = 150,
) -> Projection:
    """Cost of deciding at ``probe_tokens`` (0: before the draft writes; m ≥ 1: after a probe of m
    tokens; None: on the whole step) with the decisions ``escalate`` (see the module docstring).

    ``target_side``: the decision reads the target's verification of the probe (False: the draft's own
    confidence, no target call before an escalation). At ``probe_tokens`` 0 nothing is verified.
    """
    if probe_tokens is not None and probe_tokens < 0:
        raise ConfigError(f"probe_tokens must be None or >= 0, got {probe_tokens}")
    c = costs
    total = target_total = draft_total = 0.0
    steps = escalated = 0
    for s, solve in enumerate(solves):
        pending_t = pending_d = prompt_tokens  # what each model's next call must prefill
        target_total += c.target_batch.seconds(prompt_tokens)
        draft_total += c.draft_batch.seconds(prompt_tokens)
        for i, step in enumerate(solve):
            steps += 1
            D, T = step.draft_tokens, step.target_tokens
            target_total += T * c.target_decode + c.target_call
            draft_total += D * c.draft_decode
            up = escalate(s, i)
            escalated += up
            if probe_tokens == 0:
                if up:  # 1. the target writes the step; the draft will prefill it
                    total += c.target_batch.seconds(pending_t) + T * c.target_decode + c.target_call
                    pending_t, pending_d = 0, pending_d + T
                else:  # the draft writes it, accepted as written
                    total += c.draft_batch.seconds(pending_d) + D * c.draft_decode
                    pending_d, pending_t = 0, pending_t + D
                continue
            # 2. the probe: the draft's first p tokens (its whole step at the full-step point)
            p = D if probe_tokens is None else min(probe_tokens, D)
            whole = p >= D
            total += c.draft_batch.seconds(pending_d) + p * c.draft_decode
            pending_d = 0
            verified = 0
            if target_side:
                verified = min(p, step.verified_tokens) if not whole else step.verified_tokens
                total += c.target_batch.seconds(pending_t + verified + 1) + c.target_call
                pending_t = 0
            if up:  # 3. the target continues from the agreed prefix (from scratch when unverified)
                kept = step.agreed(verified) if verified else 0
                if not verified:
                    total += c.target_batch.seconds(pending_t)
                    pending_t = 0
                total += max(0, T - kept) * c.target_decode + c.target_call
                pending_d += max(0, T - kept)
            else:  # 4. the draft goes on: it writes its whole step again; the target prefills the rest
                if not whole:
                    total += D * c.draft_decode
                pending_t += max(0, D - verified) if verified else D
    return Projection(total, target_total, draft_total, steps, escalated)


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count half; NaN without both
    classes): the chance that a positive step scores above a negative one."""
    ranked = sorted(zip(scores, labels, strict=True), key=lambda x: x[0])
    positives = sum(1 for _, y in ranked if y)
    negatives = len(ranked) - positives
    if not positives or not negatives:
        return math.nan
    rank_sum = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2  # ranks i+1 .. j share their mean
        rank_sum += mean_rank * sum(1 for _, y in ranked[i:j] if y)
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
