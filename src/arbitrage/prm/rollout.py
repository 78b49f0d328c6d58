"""Monte-Carlo rollout values (Math-Shepherd's estimate): continue from a step, see if the answer is right.

The value of a step is the share of ``k`` completions, written by a generator from the solution through
that step, whose final answer equals the gold answer. It needs the gold answer, so it labels data (the
step-labelled evaluation set, router training) and is never a policy's PRM at solve time. Costly: each
rollout writes the rest of a solution.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from arbitrage.answer import extract_answer, has_boxed_answer
from arbitrage.backends.base import FinishReason, Generator, StepContext, StepParams
from arbitrage.errors import ConfigError, ScorerError
from arbitrage.prm.base import StepScores, check_request


def numeric_answer(text: str | None) -> float | None:
    """The number an answer states ("$1,200", "\\text{12 apples}", "25\\%"), or None."""
    if text is None:
        return None
    cleaned = re.sub(r"\\text\{([^}]*)\}|\\mathrm\{([^}]*)\}", r"\1\2", text)
    cleaned = cleaned.replace(",", "").replace("$", "").replace("\\%", "").replace("%", "")
    match = re.search(r"-?\d+(?:\.\d+)?(?:/\d+)?", cleaned)
    if not match:
        return None
    number = match.group(0)
    if "/" in number:
        num, den = number.split("/")
        return float(num) / float(den) if float(den) else None
    return float(number)


def answers_match(predicted: str | None, gold: str) -> bool:
    """Numeric equality (to 1e-6) where both are numbers, else normalised string equality."""
    p, g = numeric_answer(predicted), numeric_answer(gold)
    if p is not None and g is not None:
        return abs(p - g) <= 1e-6 * max(1.0, abs(g))
    return predicted is not None and predicted.strip().lower() == gold.strip().lower()


@dataclass(frozen=True, slots=True)
class Completion:
    """A solution continued to its end from given steps."""

    steps: tuple[str, ...]  # the new steps only
    answer: str | None  # extracted from the whole solution
    tokens: int  # generated tokens
    seconds: float


def complete(
    generator: Generator,
    question: str,
    steps: Sequence[str],
    params: StepParams,
    max_steps: int = 12,
    max_tokens: int = 600,
) -> Completion:
    """Continue the solution from ``steps`` until a boxed answer, EOS, or a limit."""
    t0 = time.perf_counter()
    solution = list(steps)
    new: list[str] = []
    tokens = 0
    if not (steps and has_boxed_answer(steps[-1])):
        for _ in range(max_steps):
            out = generator.generate_step(StepContext(question, tuple(solution)), params)
            tokens += out.tokens
            if out.text:
                solution.append(out.text)
                new.append(out.text)
            if out.finish_reason == FinishReason.EOS or has_boxed_answer(out.text) or tokens >= max_tokens:
                break
    return Completion(tuple(new), extract_answer("\n\n".join(solution)), tokens, time.perf_counter() - t0)


class RolloutScorer:
    """Reward of a step = share of ``rollouts`` completions from it that reach the gold answer.

    The first completion is greedy, the others sampled at ``temperature`` with distinct seeds.
    """

    def __init__(
        self,
        generator: Generator,
        gold_answers: Mapping[str, str],
        rollouts: int = 4,
        temperature: float = 0.7,
        params: StepParams | None = None,
        max_tokens: int = 600,
    ) -> None:
        if rollouts <= 0:
            raise ConfigError(f"rollouts must be positive, got {rollouts}")
        self.generator = generator
        self.gold_answers = gold_answers
        self.rollouts = rollouts
        self.temperature = temperature
        self.params = params or StepParams()
        self.max_tokens = max_tokens
        self.name = f"mc({generator.name}, k={rollouts})"

    def value(self, question: str, steps: Sequence[str]) -> tuple[float, list[Completion]]:
        gold = self.gold_answers.get(question)
        if gold is None:
            raise ScorerError("Rollout values need the gold answer of this question, which is not known")
        completions = []
        for i in range(self.rollouts):
            params = self.params
            if i > 0:
                params = StepParams(
                    separator=params.separator,
                    max_step_tokens=params.max_step_tokens,
                    temperature=self.temperature,
                    seed=1000 + i,
                )
            completions.append(complete(self.generator, question, steps, params, max_tokens=self.max_tokens))
        hits = sum(answers_match(c.answer, gold) for c in completions)
        return hits / len(completions), completions

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        check_request(question, steps)
        t0 = time.perf_counter()
        first = len(steps) - 1 if only_last else 0
        rewards = []
        answers: list[list[str | None]] = []
        for k in range(first, len(steps)):
            value, completions = self.value(question, steps[: k + 1])
            rewards.append(value)
            answers.append([c.answer for c in completions])
        return StepScores(
            rewards=tuple(rewards),
            first=first,
            seconds=time.perf_counter() - t0,
            scorer=self.name,
            info={"answers": answers[-1] if only_last else answers},
        )

    def close(self) -> None:
        self.generator.close()
