"""Collect oracle-labelled step pairs: ``(x, z_d, z_t, s_d, s_t, Δ, y)`` for router training.

For each question, walk a solution step by step. From each prefix the draft writes ``z_d`` and the
target writes ``z_t`` (plus ``k − 1`` extra sampled target steps when ``target_samples > 1``), the PRM
scores every candidate, and the row records ``Δ = mean(s_t) − s_d`` and ``y = 1[Δ > 0]``. The prefix
then grows by the step the *follow* rule picks: ``oracle`` (the target's step iff Δ > τ, as the
Arbitrage Oracle would decide), ``draft``, ``target`` or ``random``.

Resumable: a question's rows are written as one Parquet shard (atomically) when the question is done,
and question ids already in the folder are skipped, so a killed run never duplicates or corrupts rows;
at most the question in flight is recomputed (greedy decoding reproduces it exactly).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from arbitrage.answer import has_boxed_answer
from arbitrage.backends.base import FinishReason, Generator, StepContext, StepParams
from arbitrage.errors import ConfigError
from arbitrage.evaluation.datasets import Problem
from arbitrage.router.data import StepPair, read_pairs, write_shard

logger = logging.getLogger(__name__)

# reward(question, accepted steps before, candidate step) -> reward in [0, 1]
RewardFn = Callable[[str, Sequence[str], str], float]
Follow = Literal["oracle", "draft", "target", "random"]


@dataclass(frozen=True, slots=True)
class CollectConfig:
    """How pairs are collected."""

    step: StepParams  # greedy step parameters for z_d and the first z_t
    target_samples: int = 1  # k: target steps per prefix (extra ones sampled at `sample_temperature`)
    sample_temperature: float = 0.7
    follow: Follow = "oracle"  # which step extends the prefix
    tau: float = 0.0  # oracle follow threshold on Δ
    max_steps: int = 12  # per question
    seed: int = 0
    prm_name: str = ""

    def __post_init__(self) -> None:
        if self.target_samples < 1:
            raise ConfigError(f"--target-samples must be >= 1, got {self.target_samples}")
        if self.max_steps <= 0:
            raise ConfigError(f"--max-steps must be positive, got {self.max_steps}")
        if self.follow not in ("oracle", "draft", "target", "random"):
            raise ConfigError(f"--follow must be oracle, draft, target or random, got {self.follow!r}")


def collected_ids(folder: Path) -> set[str]:
    """Question ids already present in a collection folder."""
    if not folder.exists():
        return set()
    return {row["question_id"] for row in read_pairs(folder)}


def collect_question(
    problem: Problem, draft: Generator, target: Generator, reward: RewardFn, config: CollectConfig
) -> list[StepPair]:
    """All step pairs along one question's solution."""
    qid = f"{problem.dataset}/{problem.id}"
    steps: list[str] = []
    history: list[str] = []
    rows: list[StepPair] = []
    rng = random.Random(f"{config.seed}|{qid}")
    for index in range(config.max_steps):
        context = StepContext(problem.question, tuple(steps))
        # 1. both models write the next step from the same prefix
        z_d = draft.generate_step(context, config.step)
        z_t = target.generate_step(context, config.step)
        samples = [z_t]
        for k in range(1, config.target_samples):
            params = StepParams(
                separator=config.step.separator,
                max_step_tokens=config.step.max_step_tokens,
                temperature=config.sample_temperature,
                seed=config.seed * 1000 + k,
            )
            samples.append(target.generate_step(context, params))
        # 2. the PRM scores every candidate
        t0 = time.perf_counter()
        s_d = reward(problem.question, steps, z_d.text)
        s_ts = [reward(problem.question, steps, s.text) for s in samples]
        prm_seconds = time.perf_counter() - t0
        s_t = sum(s_ts) / len(s_ts)
        delta = s_t - s_d
        rows.append(
            StepPair(
                question_id=qid,
                step_index=index,
                question=problem.question,
                context=list(steps),
                history=list(history),
                z_d=z_d.text,
                z_t=z_t.text,
                s_d=s_d,
                s_t=s_t,
                delta=delta,
                y=int(delta > 0),
                s_t_samples=s_ts,
                draft_logprobs=list(z_d.token_logprobs),
                draft_entropies=list(z_d.token_entropies),
                draft_tokens=z_d.tokens,
                target_tokens=z_t.tokens,
                draft_finish=str(z_d.finish_reason),
                draft_seconds=z_d.seconds,
                target_seconds=sum(s.seconds for s in samples),
                prm_seconds=prm_seconds,
                draft_model=draft.name,
                target_model=target.name,
                prm=config.prm_name,
            )
        )
        # 3. extend the prefix by the followed step
        if config.follow == "oracle":
            use_target = delta > config.tau
        elif config.follow == "random":
            use_target = rng.random() < 0.5
        else:
            use_target = config.follow == "target"
        chosen = z_t if use_target else z_d
        if not chosen.text and chosen.finish_reason == FinishReason.EOS:
            break
        steps.append(chosen.text)
        history.append("target" if use_target else "draft")
        if chosen.finish_reason == FinishReason.EOS or has_boxed_answer(chosen.text):
            break
    return rows


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
    make_models: Callable[[], tuple[Generator, Generator, RewardFn]],
    out: Path,
    config: CollectConfig,
    workers: int = 1,
    show_progress: bool = True,
) -> CollectStats:
    """Collect pairs for every problem not yet in ``out``; ``workers`` questions in flight at once.

    ``make_models`` is called once per worker (local llama.cpp models keep one KV cache each, so each
    worker gets its own; remote backends may share).
    """
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    done = collected_ids(out)
    todo = [p for p in problems if f"{p.dataset}/{p.id}" not in done]
    stats = CollectStats(questions_skipped=len(problems) - len(todo))
    lock = threading.Lock()
    local = threading.local()
    created: list[tuple[Generator, Generator, RewardFn]] = []
    start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(
        total=len(problems), initial=stats.questions_skipped, unit="question", disable=not show_progress
    )

    def work(problem: Problem) -> list[StepPair]:
        if not hasattr(local, "models"):
            local.models = make_models()
            with lock:
                created.append(local.models)
        draft, target, reward = local.models
        return collect_question(problem, draft, target, reward, config)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(work, p): p for p in todo}
        for future in as_completed(futures):
            problem = futures[future]
            try:
                rows = future.result()
            except Exception as exc:  # one bad question must not stop hours of collection
                logger.error("question %s/%s failed: %s", problem.dataset, problem.id, exc)
                stats.questions_failed += 1
                bar.update(1)
                continue
            with lock:
                if rows:
                    write_shard(rows, out)
                stats.questions_done += 1
                stats.rows += len(rows)
                stats.seconds = time.perf_counter() - start
                bar.update(1)
                bar.set_postfix(rows=stats.rows, rows_per_s=f"{stats.rows_per_second:.3f}")
    bar.close()
    for draft, target, _ in created:
        draft.close()
        target.close()
    stats.seconds = time.perf_counter() - start
    return stats
