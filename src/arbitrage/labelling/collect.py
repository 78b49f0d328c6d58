"""Collect oracle-labelled step pairs: ``(x, z_d, z_t, s_d, s_t, Δ, y)`` for router training.

Collection is the :class:`~arbitrage.engine.Engine` run with a
:class:`~arbitrage.labelling.recording.RecordingPolicy`: at every step the draft writes ``z_d`` and the
target writes ``z_t`` from the same prefix (plus ``k − 1`` extra sampled target steps when
``target_samples > 1``), the PRM scores every candidate, and the solution continues with the step the
*follow* rule picks: ``oracle`` (the target's step iff ``Δ = mean(s_t) − s_d > τ``, as the Arbitrage
Oracle would decide), ``draft``, ``target`` or ``random``. Each step of the resulting trace becomes one
:class:`~arbitrage.router.data.StepPair` row with ``y = 1[Δ > 0]``. The engine's stopping rules (boxed
answer, end of answer, ``max_steps``, ``max_total_tokens``, the repetition guard) apply exactly as at
routing time; a step the engine drops (a repeat that trips the guard, an empty final step) is not part
of any solution and gives no row.

Each row also carries the **target's verification of z_d** (its ``t_*`` columns, when the target is a
:class:`~arbitrage.backends.base.Verifier`; otherwise null, with one warning per run), and with
``labels="outcome"`` **grounded labels**: after the recording solve, both candidates of every step are
continued to an answer and graded against the gold answer (:mod:`arbitrage.labelling.outcome`), in the
worker that solved the question.

Questions run through :func:`arbitrage.concurrent.solve_many`, one engine (own models, own KV caches,
own scorer) per worker. Resumable: a question's rows are written as one Parquet shard (atomically) as
soon as it is done, and question ids already in the folder are skipped, so a killed run never
duplicates or corrupts rows; at most the questions in flight are recomputed (greedy decoding
reproduces them exactly). A failing question is logged and counted, never written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from arbitrage.backends.base import Generator, StepParams, Verification, Verifier
from arbitrage.concurrent import ProblemResult, solve_many
from arbitrage.engine import Engine, EngineConfig, StepCallback, StopCheck
from arbitrage.errors import ConfigError
from arbitrage.labelling.outcome import LABEL_SOURCES, OutcomeLabeller, OutcomeOptions, PairOutcome
from arbitrage.labelling.recording import (
    PRM_SECONDS,
    S_T_SAMPLES,
    TARGET_SAMPLE_SECONDS,
    VERIFICATION,
    Follow,
    RecordingOptions,
    RecordingPolicy,
)
from arbitrage.prm.base import StepScorer
from arbitrage.router.base import VerificationSummary
from arbitrage.router.data import StepPair, read_pairs, write_shard
from arbitrage.trace import SolveTrace

logger = logging.getLogger(__name__)

__all__ = [
    "CollectConfig",
    "CollectModels",
    "CollectStats",
    "Follow",
    "OutcomeOptions",
    "collect_question",
    "run_collection",
]


class Problem(Protocol):
    """What collection needs of a problem (:class:`arbitrage.evaluation.datasets.Problem` has it)."""

    @property
    def id(self) -> str: ...  # the problem's id within its dataset
    @property
    def question(self) -> str: ...
    @property
    def dataset(self) -> str: ...  # dataset name, e.g. "gsm8k-train"
    @property
    def answer(self) -> str: ...  # the gold final answer (graded against by outcome labels)


OUTCOME = "outcome"  # Decision.info key: the step pair's PairOutcome (labels="outcome" only)


@dataclass(frozen=True, slots=True)
class CollectConfig:
    """How pairs are collected: the engine's limits and the recording policy's options."""

    step: StepParams  # greedy step parameters for z_d and the first z_t (separator, per-step cap)
    target_samples: int = 1  # k: target steps per prefix (extra ones sampled at `sample_temperature`)
    sample_temperature: float = 0.7
    follow: Follow = "oracle"  # which step extends the prefix
    tau: float = 0.0  # oracle follow threshold on Δ
    max_steps: int = 12  # per question (EngineConfig.max_steps)
    max_total_tokens: int = 2048  # per question: stop once the solution holds this many tokens
    seed: int = 0  # seeds extra target samples and the random follow rule
    prm_name: str = ""  # scorer spec, stored in every row
    labels: str = "prm"  # "prm": the PRM's Δ only; "outcome": also grounded labels by continuation
    outcome: OutcomeOptions = field(default_factory=OutcomeOptions)  # continuations (labels="outcome")

    def __post_init__(self) -> None:
        if self.max_steps <= 0:
            raise ConfigError(f"--max-steps must be positive, got {self.max_steps}")
        if self.labels not in LABEL_SOURCES:
            raise ConfigError(f"--labels must be one of {', '.join(LABEL_SOURCES)}, got {self.labels!r}")
        self.engine_config()
        self.recording_options()

    def engine_config(self) -> EngineConfig:
        """The engine's limits and stopping rules for collection."""
        return EngineConfig(step=self.step, max_steps=self.max_steps, max_total_tokens=self.max_total_tokens)

    def recording_options(self) -> RecordingOptions:
        """The recording policy's follow rule and sampling."""
        return RecordingOptions(
            follow=self.follow,
            tau=self.tau,
            target_samples=self.target_samples,
            temperature=self.sample_temperature,
            seed=self.seed,
        )


@dataclass(frozen=True, slots=True)
class CollectModels:
    """What one collection worker uses: its own draft, target and scorer (closed by the collector)."""

    draft: Generator
    target: Generator
    scorer: StepScorer
    continuation: Generator | None = None  # continues candidates for outcome labels (None: the draft)

    def close(self) -> None:
        """Close all of them (each close is idempotent)."""
        parts: list[Generator | StepScorer] = [self.draft, self.target, self.scorer]
        if self.continuation is not None:
            parts.append(self.continuation)
        for part in parts:
            try:
                part.close()
            except Exception:  # closing one must not keep the others open
                logger.exception("could not close %s", getattr(part, "name", part))


def question_id(problem: Problem) -> str:
    """The id a problem's rows carry: ``"<dataset>/<problem id>"``."""
    return f"{problem.dataset}/{problem.id}"


def collected_ids(folder: Path) -> set[str]:
    """Question ids already present in a collection folder."""
    if not folder.exists():
        return set()
    return {row["question_id"] for row in read_pairs(folder)}


def make_engine(models: CollectModels, config: CollectConfig) -> Engine:
    """The engine collection runs: the worker's models and a recording policy on its scorer (verifying
    each draft step with the target when the target can)."""
    verifier = models.target if isinstance(models.target, Verifier) else None
    policy = RecordingPolicy(models.scorer, config.recording_options(), verifier=verifier)
    return Engine(models.draft, models.target, policy, config.engine_config())


class CollectingSolver:
    """A worker's solve: the recording solve, then (``labels="outcome"``) the outcome labels of its steps.

    What :func:`arbitrage.concurrent.solve_many` runs per worker; the labels go into each step's
    ``decision.info[OUTCOME]`` for :func:`pairs_from_trace`.
    """

    def __init__(self, models: CollectModels, config: CollectConfig, golds: dict[str, str]) -> None:
        self.engine = make_engine(models, config)
        self.draft, self.target = models.draft, models.target
        self.golds = golds  # question text -> gold answer
        self.labeller = (
            OutcomeLabeller(models.continuation or models.draft, config.step, config.outcome)
            if config.labels == "outcome"
            else None
        )

    def solve(
        self,
        question: str,
        on_step: StepCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> SolveTrace:
        trace = self.engine.solve(question, on_step, should_stop)
        if self.labeller is not None:
            label_outcomes(trace, self.labeller, self.golds[question])
        return trace


def label_outcomes(trace: SolveTrace, labeller: OutcomeLabeller, gold: str) -> None:
    """Grade both candidates of every step of a recording solve (into ``decision.info[OUTCOME]``)."""
    for i, record in enumerate(trace.steps):
        z_d, z_t = record.draft, record.target
        if z_d is None or z_t is None:
            continue
        prefix = tuple(s.text for s in trace.steps[:i])
        record.decision.info[OUTCOME] = labeller.pair(
            trace.question,
            gold,
            prefix,
            (z_d.text, str(z_d.finish_reason)),
            (z_t.text, str(z_t.finish_reason)),
        )


def verification_columns(
    verification: Verification | None, draft_logprobs: tuple[float, ...]
) -> dict[str, Any]:
    """A row's ``t_*`` / ``verify_*`` / ``gsi`` columns (empty: the columns stay null)."""
    if verification is None:
        return {}
    summary = VerificationSummary.from_verification(verification, draft_logprobs)
    return {
        "t_tokens": summary.tokens,
        "t_logprobs": list(verification.token_logprobs),
        "t_mean_logprob": summary.mean_logprob,
        "t_min_logprob": summary.min_logprob,
        "t_agreement": summary.agreement,
        "t_first_divergence": summary.first_divergence,
        "t_end_is_eos": summary.end_is_eos,
        "verify_seconds": verification.seconds,
        "verify_prefill_tokens": verification.prefill_tokens,
        "gsi": summary.gsi,
    }


def outcome_columns(outcome: PairOutcome | None) -> dict[str, Any]:
    """A row's grounded-label columns (empty: the columns stay null)."""
    if outcome is None:
        return {}
    d, t = outcome.draft, outcome.target
    same = d is t  # identical candidates: continued once
    return {
        "outcome_d": d.score,
        "outcome_t": t.score,
        "outcome_advantage": outcome.advantage,
        "y_outcome": outcome.label,
        "continuation_model": outcome.model,
        "continuations": max(d.continuations, t.continuations),
        "continuation_seconds": d.seconds + (0.0 if same else t.seconds),
        "continuation_tokens": d.tokens + (0 if same else t.tokens),
        "answers_d": list(d.answers),
        "answers_t": list(t.answers),
    }


def pairs_from_trace(
    problem: Problem, trace: SolveTrace, draft_model: str, target_model: str, prm: str
) -> list[StepPair]:
    """One row per step of a recording solve, from what the engine and the policy recorded."""
    rows: list[StepPair] = []
    for i, record in enumerate(trace.steps):
        decision, z_d, z_t = record.decision, record.draft, record.target
        if z_d is None or z_t is None or decision.draft_reward is None or decision.target_reward is None:
            raise ConfigError(
                f"step {record.index} of {question_id(problem)} was not recorded by a recording policy"
            )
        earlier = trace.steps[:i]
        delta = decision.target_reward - decision.draft_reward
        rows.append(
            StepPair(
                question_id=question_id(problem),
                step_index=record.index,
                question=problem.question,
                context=[s.text for s in earlier],
                history=[s.role for s in earlier],
                z_d=z_d.text,
                z_t=z_t.text,
                s_d=decision.draft_reward,
                s_t=decision.target_reward,
                delta=delta,
                y=int(delta > 0),
                s_t_samples=list(decision.info[S_T_SAMPLES]),
                draft_logprobs=list(z_d.token_logprobs),
                draft_entropies=list(z_d.token_entropies),
                draft_tokens=z_d.tokens,
                target_tokens=z_t.tokens,
                draft_finish=str(z_d.finish_reason),
                draft_seconds=z_d.seconds,
                target_seconds=decision.info[TARGET_SAMPLE_SECONDS],
                prm_seconds=decision.info[PRM_SECONDS],
                draft_model=draft_model,
                target_model=target_model,
                prm=prm,
                **verification_columns(decision.info.get(VERIFICATION), z_d.token_logprobs),
                **outcome_columns(decision.info.get(OUTCOME)),
            )
        )
    return rows


def collect_question(
    problem: Problem,
    draft: Generator,
    target: Generator,
    scorer: StepScorer,
    config: CollectConfig,
    continuation: Generator | None = None,
) -> list[StepPair]:
    """All step pairs along one question's solution (one recording solve, then its outcome labels)."""
    models = CollectModels(draft, target, scorer, continuation)
    trace = CollectingSolver(models, config, {problem.question: problem.answer}).solve(problem.question)
    return pairs_from_trace(problem, trace, draft.name, target.name, config.prm_name)


@dataclass(slots=True)
class CollectStats:
    """What a collection run did."""

    questions_done: int = 0
    questions_skipped: int = 0  # already in the folder
    questions_failed: int = 0
    rows: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def run_collection(
    problems: Sequence[Problem],
    make_models: Callable[[], CollectModels],
    out: Path,
    config: CollectConfig,
    workers: int = 1,
    show_progress: bool = True,
) -> CollectStats:
    """Collect pairs for every problem not yet in ``out``; ``workers`` questions in flight at once.

    ``make_models`` is called once per worker (local llama.cpp models keep one KV cache each, so each
    worker gets its own engine and models); every model and scorer it made is closed at the end.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    done = collected_ids(out)
    todo = [p for p in problems if question_id(p) not in done]
    stats = CollectStats(questions_skipped=len(problems) - len(todo))
    built: list[CollectModels] = []
    lock = threading.Lock()
    warned: list[str] = []  # targets already warned about (one warning per run)
    golds = {p.question: p.answer for p in todo}
    start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(
        total=len(problems), initial=stats.questions_skipped, unit="question", disable=not show_progress
    )

    def engine() -> CollectingSolver:  # one per worker thread (solve_many calls it on first use)
        models = make_models()
        with lock:
            built.append(models)
            if not isinstance(models.target, Verifier) and not warned:
                warned.append(models.target.name)
                logger.warning(
                    "the target %s cannot verify steps: the t_* columns stay empty", models.target.name
                )
        return CollectingSolver(models, config, golds)

    def write(result: ProblemResult) -> None:  # on this (main) thread, as each question ends
        problem = todo[result.index]
        try:
            if result.trace is None:
                raise RuntimeError(result.error)
            # the engine's models are the worker's: their names are the trace's usage records
            draft_model = result.trace.usage["draft"].model
            target_model = result.trace.usage["target"].model
            rows = pairs_from_trace(problem, result.trace, draft_model, target_model, config.prm_name)
            if rows:
                write_shard(rows, out)
        except Exception as exc:  # one bad question must not stop hours of collection
            logger.error("question %s failed: %s", question_id(problem), exc)
            stats.questions_failed += 1
        else:
            stats.questions_done += 1
            stats.rows += len(rows)
        stats.seconds = time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(
            rows=stats.rows, rows_per_s=f"{stats.rows_per_second:.3f}", failed=stats.questions_failed
        )

    try:
        solve_many(engine, [p.question for p in todo], concurrency=workers, on_result=write)
    finally:
        bar.close()
        for models in built:  # solve_many closed the generators; the scorers are ours to close
            models.close()
    stats.seconds = time.perf_counter() - start
    return stats
