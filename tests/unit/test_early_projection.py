"""The projected cost of each decision point (arbitrage.evaluation.early) on hand-built steps and costs."""

from __future__ import annotations

import math

import pytest

from arbitrage.costs import CostModel, RoleCosts
from arbitrage.errors import ConfigError
from arbitrage.evaluation.early import BatchCurve, PairCosts, StepFigures, auroc, project

# target: a decode costs 1, a batch of 2 costs 1.5, each token beyond 0.25; draft: 0.5, then 0.1 a token
COSTS = PairCosts(
    draft_decode=0.5,
    target_decode=1.0,
    target_call=0.0,
    draft_batch=BatchCurve(((1, 0.5),), 0.1),
    target_batch=BatchCurve(((1, 1.0), (2, 1.5)), 0.25),
)
A = StepFigures(draft_tokens=4, target_tokens=6, verified_tokens=4, first_divergence=2, delta=0.3, y=1)
B = StepFigures(draft_tokens=3, target_tokens=3, verified_tokens=3, first_divergence=None, delta=-0.1, y=0)
SOLVES = [[A, B]]


def decide(*escalate: bool):  # type: ignore[no-untyped-def]
    return lambda s, i: escalate[i]


def test_the_batch_curve_interpolates_and_extends() -> None:
    curve = BatchCurve(((1, 1.0), (3, 2.0), (5, 2.2)), 0.5)
    assert [curve.seconds(n) for n in (0, 1, 2, 3, 4, 5, 7)] == pytest.approx([0, 1, 1.5, 2, 2.1, 2.2, 3.2])
    assert curve.scaled(2).seconds(2) == pytest.approx(3.0)
    with pytest.raises(ConfigError):
        BatchCurve(((2, 1.0),), 0.1)
    kernels = BatchCurve.from_kernels({"decode_ms": 40.0, "batch_ms": {"4": 100.0, "2": 60.0}}, 0.01)
    assert kernels.points == ((1, 0.04), (2, 0.06), (4, 0.1)) and kernels.seconds(6) == pytest.approx(0.12)
    small = BatchCurve.from_role(RoleCosts(decode=1.0, evaluate=0.2, batch_extra=0.5))
    assert small.seconds(8) == pytest.approx(4.5) and small.seconds(10) == pytest.approx(4.9)


def test_before_the_draft() -> None:
    p = project(SOLVES, decide(False, True), 0, COSTS, prompt_tokens=0)
    # A: the draft writes 4 tokens (2.0); B: the target prefills A's 4 tokens (2.0) and writes 3 (3.0)
    assert p.seconds == pytest.approx(7.0)
    assert (p.target_only_seconds, p.draft_only_seconds) == pytest.approx((9.0, 3.5))
    assert (p.speedup, p.escalation_rate) == pytest.approx((9 / 7, 0.5))


def test_a_target_side_probe() -> None:
    p = project(SOLVES, decide(True, False), 2, COSTS, prompt_tokens=0)
    # A: 2 draft tokens (1.0), a 3-token verification (1.75), the target keeps 2 and decodes 4 (4.0)
    # B: the draft prefills the target's 4 tokens after the agreed 2 (0.8) and writes 2 (1.0); verified
    # (1.75); let go on, it writes its 3 tokens again (1.5)
    assert p.seconds == pytest.approx(6.75 + 5.05)


def test_a_draft_side_probe_calls_the_target_only_to_escalate() -> None:
    p = project(SOLVES, decide(True, False), 2, COSTS, target_side=False, prompt_tokens=0)
    # A: 2 draft tokens (1.0), the target writes its 6 from scratch (6.0); B: the draft prefills them
    # (1.0), writes 2 (1.0) and its 3 again (1.5)
    assert p.seconds == pytest.approx(7.0 + 3.5)


def test_the_whole_step_is_verified_once_and_nothing_is_written_twice() -> None:
    p = project(SOLVES, decide(False, False), None, COSTS, prompt_tokens=0)
    # A: 4 draft tokens (2.0), verified with one context token (2.25); B: 3 tokens (1.5), verified (2.0)
    assert p.seconds == pytest.approx(7.75)
    longer = project(SOLVES, decide(False, False), 10, COSTS, prompt_tokens=0)
    assert longer.seconds == pytest.approx(p.seconds)  # a probe longer than every step is the step


def test_the_extremes_are_target_only_and_draft_only_with_the_prompt() -> None:
    costs = PairCosts.from_model(
        CostModel(draft=RoleCosts(0.03, 0.006, 0.0, 0.016), target=RoleCosts(0.046, 0.015, 0.002, 0.044))
    )
    solves = [[A, B], [B, A, A]]
    always = project(solves, lambda s, i: True, 0, costs)
    never = project(solves, lambda s, i: False, 0, costs)
    assert always.seconds == pytest.approx(always.target_only_seconds)
    assert never.seconds == pytest.approx(never.draft_only_seconds)
    assert 1 < never.speedup == pytest.approx(always.target_only_seconds / never.draft_only_seconds)
    with pytest.raises(ConfigError):
        project(solves, lambda s, i: True, -1, costs)


def test_a_cheaper_draft_only_changes_the_draft_side() -> None:
    cheap = COSTS.with_ratio(0.1)
    assert cheap.ratio == pytest.approx(0.1) and cheap.target_batch == COSTS.target_batch
    assert cheap.draft_batch.seconds(3) == pytest.approx(COSTS.draft_batch.seconds(3) * 0.2)
    slow, fast = (project(SOLVES, decide(False, True), 0, c, prompt_tokens=0) for c in (COSTS, cheap))
    assert fast.speedup > slow.speedup and fast.target_only_seconds == slow.target_only_seconds


def test_agreed_tokens_stop_at_the_first_divergence() -> None:
    assert (A.agreed(1), A.agreed(2), A.agreed(4)) == (1, 2, 2)
    assert (B.agreed(2), B.agreed(9)) == (2, 3)
    row = {
        "draft_tokens": 5,
        "target_tokens": 7,
        "t_tokens": 5,
        "t_first_divergence": -1,
        "delta": 0.2,
        "y": 1,
    }
    assert StepFigures.of(row) == StepFigures(5, 7, 5, None, 0.2, 1, None)


def test_auroc() -> None:
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
