"""Grade a prediction against a gold answer with a real math-equivalence checker (math-verify).

Extraction: the prediction's final answer is taken from the solution text (last ``\\boxed{}``, then
GSM8K-style fallbacks, see :mod:`arbitrage.answer`); both sides are parsed by math-verify and compared
symbolically and numerically. This is the one answer comparison of arbitrage: evaluation grades
with it, and so do Monte-Carlo rollouts (:mod:`arbitrage.labelling.rollout`).

Time limits: math-verify's own limits use SIGALRM, which only works in the main thread, so there they
are used as they are. In any other thread (collection and rollout workers) the comparison runs, with
math-verify's limits off, in a daemon helper thread that the caller waits on for at most ``timeout``
seconds: past that, the caller gets a ``TimeoutError`` (``grade`` turns it into a failed grade) and the
abandoned comparison finishes, or not, in the background. The caller never hangs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from arbitrage.answer import extract_answer

logger = logging.getLogger(__name__)

GRADE_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class Grade:
    """The verdict on one prediction."""

    correct: bool
    predicted: str | None  # the extracted final answer (None if nothing could be extracted)
    error: str | None = None  # why grading failed (timeout, parse error), when it did


# a number written as text with its unit, "\\text{12 apples}": the number and the unit, in math mode
_TEXT_NUMBER = re.compile(r"\\(?:text|mathrm)\{\s*(-?[\d.,]+[^{}]*)\}")


def _wrap(answer: str) -> str:
    text = _TEXT_NUMBER.sub(r"\1", answer.strip())
    if "\\boxed" in text or text.startswith("$"):
        return text
    return f"${text}$"


def _match(predicted: str, gold: str, limit: int | None) -> bool:
    from math_verify import parse, verify

    gold_parsed = parse(_wrap(gold), parsing_timeout=limit)
    pred_parsed = parse(_wrap(predicted), parsing_timeout=limit)
    if not gold_parsed or not pred_parsed:
        return predicted.strip().replace(",", "") == gold.strip().replace(",", "")
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=limit))


def _watched(compare: Callable[[], bool], timeout: int) -> bool:
    """``compare()`` in a daemon thread; its result, or TimeoutError after ``timeout`` seconds."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, compare()))
        except BaseException as exc:  # handed to the caller below
            outcome.append((False, exc))

    helper = threading.Thread(target=run, name="arbitrage-grade", daemon=True)
    helper.start()
    helper.join(timeout)
    if not outcome:
        raise TimeoutError(f"answer comparison took over {timeout} s (abandoned)")
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return bool(value)


def answers_match(predicted: str | None, gold: str, timeout: int = GRADE_TIMEOUT_S) -> bool:
    """Whether two final answers are mathematically equivalent (no answer matches nothing).

    Raises ``TimeoutError`` past ``timeout`` seconds, in any thread (see the module docstring), and
    math-verify's parse errors.
    """
    if predicted is None:
        return False
    if threading.current_thread() is threading.main_thread():
        return _match(predicted, gold, timeout)
    return _watched(lambda: _match(predicted, gold, None), timeout)


def grade_answer(predicted: str | None, gold: str, timeout: int = GRADE_TIMEOUT_S) -> Grade:
    """Compare an extracted final answer with ``gold``; never raises (a failure is a wrong grade)."""
    if predicted is None:
        return Grade(False, None)
    try:
        return Grade(answers_match(predicted, gold, timeout), predicted)
    except Exception as exc:  # math-verify raises TimeoutError and assorted sympy errors
        logger.warning("grading %r against %r failed: %s", predicted, gold, exc)
        return Grade(False, predicted, error=f"{type(exc).__name__}: {exc}")


def grade(solution: str, gold: str, timeout: int = GRADE_TIMEOUT_S) -> Grade:
    """Extract the final answer from ``solution`` and compare it with ``gold``."""
    return grade_answer(extract_answer(solution), gold, timeout)
