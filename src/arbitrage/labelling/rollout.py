"""Monte-Carlo rollout values (Math-Shepherd's estimate): continue from a step, see if the answer is right.

The value of a step is the share of ``k`` completions, written by a generator from the solution through
that step, whose final answer equals the gold answer (:func:`arbitrage.grading.answers_match`,
the same comparison evaluation grades with). It needs the gold answer, so it labels data (the
step-labelled evaluation set, router training) and is never a policy's PRM at solve time. Costly: each
rollout writes the rest of a solution.

A completion is the :class:`~arbitrage.engine.Engine` solving from the given steps
(``Engine.solve(question, prefix=steps)``) with the draft-only policy by default, so rollouts stop by
the engine's rules (boxed answer, end of answer, step and token limits, the repetition guard). Sampled
completions are seeded by :func:`arbitrage.seeds.sample_seed`.

The ``mc:MODEL`` spec builds a :class:`RolloutScorer` through :func:`load_scorer` here, which knows
every spec of the PRM registry (:mod:`arbitrage.prm.registry`) and ``mc`` besides: the registry stands
below the engine and cannot build it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from arbitrage.backends.base import Generator, StepParams
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ConfigError, ScorerError
from arbitrage.grading import grade_answer
from arbitrage.policies.base import RoutingPolicy
from arbitrage.policies.basic import DraftOnlyPolicy
from arbitrage.prm import registry
from arbitrage.prm.base import StepScorer, StepScores, check_request
from arbitrage.prm.registry import ScorerFactory, ScorerOptions
from arbitrage.seeds import sample_seed


@dataclass(frozen=True, slots=True)
class Completion:
    """A solution continued to its end from given steps."""

    steps: tuple[str, ...]  # the new steps only
    answer: str | None  # extracted from the whole solution
    tokens: int  # generated tokens (every step call, kept or not)
    seconds: float


def complete(
    generator: Generator,
    question: str,
    steps: Sequence[str],
    params: StepParams,
    max_steps: int = 12,
    max_tokens: int = 600,
    *,
    policy: RoutingPolicy | None = None,
    target: Generator | None = None,
) -> Completion:
    """Continue the solution from ``steps`` until a boxed answer, EOS, or a limit.

    ``generator`` writes the steps (it is the engine's draft); with another ``policy`` than the default
    draft-only one, ``target`` is the model it escalates to. ``max_steps`` and ``max_tokens`` count the
    new steps and the new solution tokens.
    """
    t0 = time.perf_counter()
    config = EngineConfig(step=params, max_steps=max_steps, max_total_tokens=max_tokens)
    engine = Engine(generator, target or generator, policy or DraftOnlyPolicy(), config)
    trace = engine.solve(question, prefix=steps)
    tokens = trace.usage["draft"].generated_tokens + trace.usage["target"].generated_tokens
    return Completion(tuple(s.text for s in trace.steps), trace.answer, tokens, time.perf_counter() - t0)


class RolloutScorer:
    """Reward of a step = share of ``rollouts`` completions from it that reach the gold answer.

    The first completion is greedy, the others sampled at ``temperature``, completion ``i`` of the
    solution through step ``n`` seeded ``sample_seed(seed, question, n, i)``.
    """

    def __init__(
        self,
        generator: Generator,
        gold_answers: Mapping[str, str],
        rollouts: int = 4,
        temperature: float = 0.7,
        params: StepParams | None = None,
        max_tokens: int = 600,
        seed: int = 0,
    ) -> None:
        if rollouts <= 0:
            raise ConfigError(f"rollouts must be positive, got {rollouts}")
        self.generator = generator
        self.gold_answers = gold_answers
        self.rollouts = rollouts
        self.temperature = temperature
        self.params = params or StepParams()
        self.max_tokens = max_tokens
        self.seed = seed
        self.name = f"mc({generator.name}, k={rollouts})"

    def value(self, question: str, steps: Sequence[str]) -> tuple[float, list[Completion]]:
        gold = self.gold_answers.get(question)
        if gold is None:
            raise ScorerError("Rollout values need the gold answer of this question, which is not known")
        completions = []
        for i in range(self.rollouts):
            params = self.params
            if i > 0:
                seed = sample_seed(self.seed, question, len(steps), i)
                params = dataclasses.replace(params, temperature=self.temperature, seed=seed)
            completions.append(complete(self.generator, question, steps, params, max_tokens=self.max_tokens))
        hits = sum(grade_answer(c.answer, gold).correct for c in completions)
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


def _mc(rest: str, options: ScorerOptions) -> StepScorer:
    if options.gold_answers is None:
        raise ConfigError(registry.NO_GOLD_ANSWERS)
    if not rest:
        raise ConfigError("A rollout PRM spec needs a model: mc:MODEL")
    from arbitrage.backends.loader import GeneratorOptions, load_generator

    generator = load_generator(rest, GeneratorOptions(n_ctx=options.n_ctx, settings=options.settings))
    return RolloutScorer(generator, options.gold_answers, rollouts=options.rollouts)


SCORERS: dict[str, ScorerFactory] = {**registry.SCORERS, "mc": _mc}  # the PRM registry's, and mc


def load_scorer(spec: str, options: ScorerOptions | None = None) -> StepScorer:
    """Build the scorer a spec names: any of the PRM registry's, or ``mc:MODEL`` (needs ``gold_answers``)."""
    return registry.load_scorer(spec, options, scorers=SCORERS)
