"""Grade a prediction against a gold answer with a real math-equivalence checker (math-verify).

Extraction: the prediction's final answer is taken from the solution text (last ``\\boxed{}``, then
GSM8K-style fallbacks, see :mod:`arbitrage.answer`); both sides are parsed by math-verify and compared
symbolically and numerically. math-verify's time limits use SIGALRM, which only works in the main
thread: grade in the main thread (the evaluation runner does); elsewhere the limits are off.
"""

from __future__ import annotations

import logging
import threading
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


def _wrap(answer: str) -> str:
    text = answer.strip()
    if "\\boxed" in text or text.startswith("$"):
        return text
    return f"${text}$"


def answers_match(predicted: str, gold: str, timeout: int = GRADE_TIMEOUT_S) -> bool:
    """Whether two final answers are mathematically equivalent."""
    from math_verify import parse, verify

    in_main = threading.current_thread() is threading.main_thread()
    limit = timeout if in_main else None
    gold_parsed = parse(_wrap(gold), parsing_timeout=limit)
    pred_parsed = parse(_wrap(predicted), parsing_timeout=limit)
    if not gold_parsed or not pred_parsed:
        return predicted.strip().replace(",", "") == gold.strip().replace(",", "")
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=limit))


def grade(solution: str, gold: str, timeout: int = GRADE_TIMEOUT_S) -> Grade:
    """Extract the final answer from ``solution`` and compare it with ``gold``."""
    predicted = extract_answer(solution)
    if predicted is None:
        return Grade(False, None)
    try:
        return Grade(answers_match(predicted, gold, timeout), predicted)
    except Exception as exc:  # math-verify raises TimeoutError and assorted sympy errors
        logger.warning("grading %r against %r failed: %s", predicted, gold, exc)
        return Grade(False, predicted, error=f"{type(exc).__name__}: {exc}")
