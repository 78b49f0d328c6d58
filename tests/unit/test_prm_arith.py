"""The arithmetic verifier: table-driven cases (tests/data/arith_cases.json) and the scorer contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.errors import ConfigError, ScorerError
from arbitrage.prm.arithmetic import ArithmeticVerifier, find_equations

CASES = json.loads((Path(__file__).parents[1] / "data" / "arith_cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:40] for c in CASES])
def test_verdicts(case: dict[str, str]) -> None:
    reward, checks = ArithmeticVerifier().check(case["text"])
    verdict = "none" if not checks else "pass" if reward == 1.0 else "fail"
    assert verdict == case["verdict"], [(c.text, c.holds) for c in checks]


def test_failed_equation_is_named() -> None:
    checks = find_equations("She has 15 - 3 = 12 left, then 12/2 = 5 each.")
    assert [(c.text, c.holds) for c in checks] == [("15 - 3 = 12", True), ("12/2 = 5", False)]
    assert checks[1].left == 6.0 and checks[1].right == 5.0


def test_scorer_scores_last_or_all_steps() -> None:
    verifier = ArithmeticVerifier(neutral=0.4)
    steps = ["Tom buys 3 + 5 = 8 apples.", "He gives 8 - 2 = 5 away.", "He is happy."]
    last = verifier.score("q", steps)
    assert last.rewards == (0.4,) and last.first == 2 and last.info["steps"][0]["verdict"] == "none"
    every = verifier.score("q", steps, only_last=False)
    assert every.rewards == (1.0, 0.0, 0.4) and every.first == 0
    assert every.info["steps"][1]["failed"] == ["8 - 2 = 5"]
    assert every.reward(1) == 0.0
    assert verifier.name == "arith(neutral=0.4)"


def test_bad_requests() -> None:
    with pytest.raises(ConfigError):
        ArithmeticVerifier(neutral=1.5)
    with pytest.raises(ScorerError, match="no steps"):
        ArithmeticVerifier().score("q", [])
    with pytest.raises(ScorerError, match="question is empty"):
        ArithmeticVerifier().score(" ", ["1 + 1 = 2"])
    with pytest.raises(ScorerError, match="not one string"):
        ArithmeticVerifier().score("q", "1 + 1 = 2")


HOSTILE = json.loads((Path(__file__).parents[1] / "data" / "arith_hostile.json").read_text())


@pytest.mark.parametrize("case", HOSTILE, ids=[c["text"][:40] or "<empty>" for c in HOSTILE])
def test_hostile_steps_never_crash(case: dict[str, str]) -> None:
    """Whatever a model writes, the verifier answers pass, fail or "cannot check" (none): no exception."""
    reward, checks = ArithmeticVerifier().check(case["text"])
    verdict = "none" if not checks else "pass" if reward == 1.0 else "fail"
    assert verdict == case["verdict"], [(c.text, c.holds) for c in checks]
    scores = ArithmeticVerifier().score("q", [case["text"] or " "])
    assert 0.0 <= scores.last <= 1.0
