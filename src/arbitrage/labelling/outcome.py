"""Grounded (outcome) labels: continue from each candidate step to an answer and grade it.

The PRM's advantage Δ says which step a judge prefers; the **outcome advantage** says which step leads
to the right answer more often. For one step pair ``(z_d, z_t)`` after a prefix:

1. each candidate is continued from ``prefix + candidate`` to an answer by the *continuation model*
   (default: the draft), with the :class:`~arbitrage.engine.Engine` and the draft-only policy
   (``Engine.solve(question, prefix=...)``): one greedy continuation, or ``k`` sampled ones
   (temperature ``temperature``, seeded by :func:`arbitrage.seeds.sample_seed` with the index of the
   first continued step and the continuation's number, so both candidates of a pair share seeds);
2. each continuation's final answer is graded against the gold answer
   (:func:`arbitrage.grading.grade_answer`, whose time limits hold in worker threads);
3. ``outcome_d`` / ``outcome_t`` = share of a candidate's continuations graded right,
   ``outcome_advantage = outcome_t − outcome_d`` and ``y_outcome = 1[outcome_advantage > 0]``.

A candidate that already ends the solution (it states a boxed answer, or ended with the end of the
answer) is graded directly, without continuation. Identical candidates (same text, same ending) are
continued once and share the result, so their advantage is exactly 0.

A greedy continuation is reused: a greedy step is a function of its context (the backends'
determinism, :mod:`arbitrage.backends.llamacpp_eval`), so the continuation from ``prefix + z`` that
wrote steps ``c1 … cn`` and ended by itself (end of answer, or a boxed answer) is also the
continuation from ``prefix + z + c1 … ck`` for every k < n, with the same answer. The collector follows
one candidate per step, and the next step's draft candidate is usually ``c1``, so about one of each
pair's two continuations is known before it would run. Reused continuations cost 0 seconds; their
``tokens`` are those of the steps they consist of. A continuation stopped by a limit or the loop guard
is not reused (from a later state its limits would reach further).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from arbitrage.answer import extract_answer, has_boxed_answer
from arbitrage.backends.base import Generator, StepParams
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ConfigError
from arbitrage.grading import grade_answer
from arbitrage.policies.basic import DraftOnlyPolicy
from arbitrage.router.labels import LABEL_SOURCES
from arbitrage.seeds import sample_seed
from arbitrage.trace import SolveTrace

logger = logging.getLogger(__name__)

__all__ = ["LABEL_SOURCES", "CandidateOutcome", "OutcomeLabeller", "OutcomeOptions", "PairOutcome"]


@dataclass(frozen=True, slots=True)
class OutcomeOptions:
    """How candidates are continued to an answer."""

    continuations: int = 1  # k per candidate: 1 = one greedy continuation, more = sampled
    temperature: float = 0.7  # sampling temperature when continuations > 1
    seed: int = 0  # seeds the sampled continuations
    max_steps: int = 24  # steps a continuation may add
    max_total_tokens: int = 2048  # tokens a continuation may add

    def __post_init__(self) -> None:
        if self.continuations < 1:
            raise ConfigError(f"--continuations must be >= 1, got {self.continuations}")
        if self.continuations > 1 and self.temperature <= 0:
            raise ConfigError("Several continuations need a sampling temperature > 0")


@dataclass(frozen=True, slots=True)
class CandidateOutcome:
    """One candidate step continued to an answer (``continuations`` times) and graded."""

    score: float  # share of continuations whose answer is right, in [0, 1]
    answers: tuple[str | None, ...]  # [continuations, or 1 when graded directly] final answers
    continuations: int  # continuations run (0: the candidate ended the solution, graded directly)
    seconds: float  # Σ wall seconds of the continuations
    tokens: int  # Σ tokens they generated


@dataclass(frozen=True, slots=True)
class PairOutcome:
    """Both candidates of a step pair, graded. Written into a row's ``outcome_*`` columns."""

    draft: CandidateOutcome
    target: CandidateOutcome
    model: str  # the continuation model

    @property
    def advantage(self) -> float:
        """outcome_t − outcome_d."""
        return self.target.score - self.draft.score

    @property
    def label(self) -> int:
        """y_outcome = 1[advantage > 0]."""
        return int(self.advantage > 0)


class OutcomeLabeller:
    """Continues candidate steps with ``model`` (draft-only decoding) and grades the answers."""

    def __init__(self, model: Generator, step: StepParams, options: OutcomeOptions | None = None) -> None:
        self.model = model
        self.step = step  # the collection's step parameters (separator, per-step cap; greedy)
        self.options = options or OutcomeOptions()
        # greedy continuations of the current question: solution steps -> (answer, tokens to its end)
        self._known: dict[tuple[str, ...], tuple[str | None, int]] = {}
        self._question: str | None = None
        self.reused = 0  # continuations answered from an earlier one (see the module docstring)

    @property
    def _greedy(self) -> bool:
        return self.options.continuations == 1 and self.step.temperature == 0

    def _remember(self, question: str, steps: tuple[str, ...], trace: SolveTrace) -> None:
        """Record the greedy continuation ``trace`` from ``steps`` for every state it passed through."""
        if not self._greedy or trace.stop_reason not in ("eos", "answer"):
            return
        if question != self._question:  # one question at a time: the memory stays small
            self._known, self._question = {}, question
        texts = [s.text for s in trace.steps]
        left = sum(s.tokens for s in trace.steps)
        for k in range(len(texts)):
            self._known[(*steps, *texts[:k])] = (trace.answer, left)
            left -= trace.steps[k].tokens

    def candidate(
        self, question: str, gold: str, prefix: tuple[str, ...], text: str, finish: str
    ) -> CandidateOutcome:
        """Grade ``prefix + text``: directly when ``text`` ends the solution, else by continuation."""
        steps = (*prefix, text)
        if finish == "eos" or has_boxed_answer(text):
            answer = extract_answer(self.step.separator.join(steps))
            graded = grade_answer(answer, gold).correct
            return CandidateOutcome(float(graded), (answer,), 0, 0.0, 0)
        o = self.options
        known = self._known.get(steps) if self._greedy and question == self._question else None
        if known is not None:
            self.reused += 1
            answer, left = known
            return CandidateOutcome(float(grade_answer(answer, gold).correct), (answer,), 1, 0.0, left)
        answers: list[str | None] = []
        right, seconds, tokens = 0, 0.0, 0
        for i in range(o.continuations):
            params = self.step
            if o.continuations > 1:
                seed = sample_seed(o.seed, question, len(steps), i)
                params = dataclasses.replace(self.step, temperature=o.temperature, seed=seed)
            config = EngineConfig(step=params, max_steps=o.max_steps, max_total_tokens=o.max_total_tokens)
            trace = Engine(self.model, self.model, DraftOnlyPolicy(), config).solve(question, prefix=steps)
            self._remember(question, steps, trace)
            answers.append(trace.answer)
            right += int(grade_answer(trace.answer, gold).correct)
            seconds += trace.wall_seconds
            tokens += trace.usage["draft"].generated_tokens
        return CandidateOutcome(right / o.continuations, tuple(answers), o.continuations, seconds, tokens)

    def pair(
        self,
        question: str,
        gold: str,
        prefix: tuple[str, ...],
        draft: tuple[str, str],
        target: tuple[str, str],
    ) -> PairOutcome:
        """Both candidates (``(text, finish)`` each) after ``prefix``; identical ones continued once."""
        d = self.candidate(question, gold, prefix, *draft)
        t = d if target == draft else self.candidate(question, gold, prefix, *target)
        return PairOutcome(d, t, self.model.name)
