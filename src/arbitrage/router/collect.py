"""Collect oracle-labelled step pairs: ``(x, z_d, z_t, s_d, s_t, Δ, y)`` for router training.

Collection is the :class:`~arbitrage.engine.Engine` run with a
:class:`~arbitrage.router.recording.RecordingPolicy`: at every step the draft writes ``z_d`` and the
target writes ``z_t`` from the same prefix (plus ``k − 1`` extra sampled target steps when
``target_samples > 1``), the PRM scores every candidate, and the solution continues with the step the
*follow* rule picks: ``oracle`` (the target's step iff ``Δ = mean(s_t) − s_d > τ``, as the Arbitrage
Oracle would decide), ``draft``, ``target`` or ``random``. Each step of the resulting trace becomes one
:class:`~arbitrage.router.data.StepPair` row with ``y = 1[Δ > 0]``. The engine's stopping rules (boxed
answer, end of answer, ``max_steps``, ``max_total_tokens``, the repetition guard) apply exactly as at
routing time; a step the engine drops (a repeat that trips the guard, an empty final step) is not part
of any solution and gives no row.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from arbitrage.backends.base import Generator, StepParams
from arbitrage.concurrent import ProblemResult, solve_many
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ConfigError
from arbitrage.prm.base import StepScorer
from arbitrage.router.data import StepPair, read_pairs, write_shard
from arbitrage.router.recording import (
    PRM_SECONDS,
    S_T_SAMPLES,
    TARGET_SAMPLE_SECONDS,
    Follow,
    RecordingOptions,
    RecordingPolicy,
)
from arbitrage.trace import SolveTrace

logger = logging.getLogger(__name__)

__all__ = ["CollectConfig", "CollectModels", "CollectStats", "Follow", "collect_question", "run_collection"]


class Problem(Protocol):
    """What collection needs of a problem (:class:`arbitrage.evaluation.datasets.Problem` has it)."""

    @property
    def id(self) -> str: ...  # the problem's id within its dataset
    @property
    def question(self) -> str: ...
    @property
    def dataset(self) -> str: ...  # dataset name, e.g. "gsm8k-train"


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

    def __post_init__(self) -> None:
        if self.max_steps <= 0:
            raise ConfigError(f"--max-steps must be positive, got {self.max_steps}")
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

    def close(self) -> None:
        """Close all three (each close is idempotent)."""
        for part in (self.draft, self.target, self.scorer):
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
    """The engine collection runs: the worker's models and a recording policy on its scorer."""
    policy = RecordingPolicy(models.scorer, config.recording_options())
    return Engine(models.draft, models.target, policy, config.engine_config())


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
            )
        )
    return rows


def collect_question(
    problem: Problem, draft: Generator, target: Generator, scorer: StepScorer, config: CollectConfig
) -> list[StepPair]:
    """All step pairs along one question's solution (one recording solve)."""
    models = CollectModels(draft, target, scorer)
    trace = make_engine(models, config).solve(problem.question)
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
    start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(
        total=len(problems), initial=stats.questions_skipped, unit="question", disable=not show_progress
    )

    def engine() -> Engine:  # one per worker thread (solve_many calls it on first use)
        models = make_models()
        with lock:
            built.append(models)
        return make_engine(models, config)

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
