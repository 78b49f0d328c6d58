"""Solve many problems at once, so a batching server (vLLM, SGLang) sees a full batch.

Each problem runs its own step loop (``Engine.solve``) in a worker thread; at most ``concurrency`` are in
flight. The generator protocol is synchronous, and the remote backend spends its time waiting on HTTP,
so threads give the server as many concurrent requests as there are problems in flight. Local
in-process backends keep working: each llama.cpp or transformers model serialises its own calls with a
lock (one KV cache per model), so for them concurrency adds waiting, not speed, and interleaved problems
evict each other's cached prefixes.

- Latency stays per problem: each :class:`ProblemResult` carries its own wall time (from the moment a
  worker picks it up, so time spent queued behind ``concurrency`` is excluded) and its trace.
- One failing problem reports its error and the others go on.
- Results come back in input order, and also one by one as they finish through ``on_result``, called on
  the caller's thread (no locking needed), so a caller can append them to a file and resume a run later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from arbitrage.backends.base import Generator
from arbitrage.errors import ArbitrageError, ConfigError
from arbitrage.trace import SolveTrace, StepRecord

logger = logging.getLogger(__name__)


@runtime_checkable
class Solver(Protocol):
    """An engine as its users see it (:class:`arbitrage.engine.Engine` is one): a solve, with a callback
    per accepted step and a check asked at each step boundary whether to stop, and the two models
    (:func:`solve_many` closes them at the end when a factory built the solver). The one protocol for
    it: :func:`solve_many` and the server (:mod:`arbitrage.server.app`) both take a ``Solver``.

    Declared here, so this module depends on the engine's shape, not on the engine (the engine is
    above it: anything may run problems concurrently without importing the step loop's module).
    """

    @property
    def draft(self) -> Generator: ...

    @property
    def target(self) -> Generator: ...

    def solve(
        self,
        question: str,
        on_step: Callable[[StepRecord], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> SolveTrace: ...


Schedule = Literal["per_problem", "lockstep"]  # how solve_many paces the problems in flight
SCHEDULES: tuple[Schedule, ...] = ("per_problem", "lockstep")
SolverFactory = Callable[[], Solver]  # builds one worker's solver (solve_many calls it once per thread)
ResultCallback = Callable[["ProblemResult"], None]


@dataclass(frozen=True, slots=True)
class ProblemResult:
    """The outcome of one problem of a :func:`solve_many` run. Read by eval/collect writers."""

    index: int  # position of the question in the input sequence
    question: str
    trace: SolveTrace | None  # the full solve; None when it failed
    error: str | None = None  # user-readable reason of a failure; None on success
    error_type: str | None = None  # class name of the failure (BackendError, ...)
    seconds: float = 0.0  # wall seconds of this problem, from the start of its solve to its end
    started_at: float = 0.0  # time.perf_counter() when a worker picked it up (for timelines)

    @property
    def ok(self) -> bool:
        return self.trace is not None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Throughput of a :func:`solve_many` run (computed by :func:`summarise`)."""

    problems: int
    failed: int
    wall_seconds: float  # first start to last finish
    problems_per_second: float  # problems (finished or failed) / wall_seconds
    mean_problem_seconds: float  # mean per-problem latency over successful problems (0 when none)


def summarise(results: Sequence[ProblemResult]) -> RunSummary:
    """Throughput and latency of a run: problems / (last end − first start); mean latency of the ok ones."""
    if not results:
        return RunSummary(0, 0, 0.0, 0.0, 0.0)
    start = min(r.started_at for r in results)
    end = max(r.started_at + r.seconds for r in results)
    wall = max(end - start, 1e-9)
    ok = [r.seconds for r in results if r.ok]
    return RunSummary(
        problems=len(results),
        failed=sum(1 for r in results if not r.ok),
        wall_seconds=wall,
        problems_per_second=len(results) / wall,
        mean_problem_seconds=sum(ok) / len(ok) if ok else 0.0,
    )


class _Engines:
    """One engine per worker thread, built on first use; closed at the end when we built them."""

    def __init__(self, source: Solver | SolverFactory) -> None:
        self._shared = source if isinstance(source, Solver) else None
        self._factory = None if isinstance(source, Solver) else source
        self._local = threading.local()
        self._built: list[Solver] = []
        self._lock = threading.Lock()

    def get(self) -> Solver:
        if self._shared is not None:
            return self._shared
        engine: Solver | None = getattr(self._local, "engine", None)
        if engine is None:
            assert self._factory is not None
            engine = self._factory()
            self._local.engine = engine
            with self._lock:
                self._built.append(engine)
        return engine

    def close(self) -> None:
        closed: set[int] = set()
        for engine in self._built:
            for model in (engine.draft, engine.target):
                if id(model) not in closed:
                    closed.add(id(model))
                    model.close()


class StepBarrier:
    """The step-synchronous schedule's barrier: every problem of a wave waits, before each step, until
    all the wave's unfinished problems have reached the same point, so their requests for the step go
    out together (the official Arbitrage and RSD code advances a batch this way, one batched request
    per model and step). A finished or failed problem leaves the wave and no longer holds it up."""

    def __init__(self, parties: int) -> None:
        self._active = parties
        self._arrived = 0
        self._round = 0
        self._cond = threading.Condition()

    def wait(self) -> bool:
        """Block until every active problem has arrived; always False (a ``should_stop`` check)."""
        with self._cond:
            self._arrived += 1
            if self._arrived >= self._active:
                self._release()
            else:
                current = self._round
                self._cond.wait_for(lambda: self._round != current)
        return False

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            if self._arrived and self._arrived >= self._active:
                self._release()

    def _release(self) -> None:
        self._arrived = 0
        self._round += 1
        self._cond.notify_all()


def _solve_one(
    engines: _Engines, index: int, question: str, barrier: StepBarrier | None = None
) -> ProblemResult:
    start = time.perf_counter()
    try:
        trace = engines.get().solve(question, should_stop=barrier.wait if barrier else None)
    except ArbitrageError as exc:
        logger.warning("problem %d failed: %s", index, exc)
        return ProblemResult(
            index, question, None, str(exc), type(exc).__name__, time.perf_counter() - start, start
        )
    except Exception as exc:  # a bug must not sink the other problems of a long run; keep its trace
        logger.exception("problem %d failed unexpectedly", index)
        return ProblemResult(
            index, question, None, f"{type(exc).__name__}: {exc}", type(exc).__name__,
            time.perf_counter() - start, start,
        )  # fmt: skip
    finally:
        if barrier is not None:
            barrier.leave()
    return ProblemResult(index, question, trace, seconds=time.perf_counter() - start, started_at=start)


def solve_many(
    engine: Solver | SolverFactory,
    questions: Sequence[str],
    *,
    concurrency: int = 1,
    on_result: ResultCallback | None = None,
    schedule: Schedule = "per_problem",
) -> list[ProblemResult]:
    """Solve ``questions`` with up to ``concurrency`` in flight; return results in input order.

    ``schedule``: ``"per_problem"`` (the default) starts the next problem as soon as a worker is free,
    each problem at its own pace, so a continuously batching server always has ``concurrency``
    requests; ``"lockstep"`` runs the problems in waves of ``concurrency`` that advance one step at a
    time together (:class:`StepBarrier`), the official code's batching, where a wave's fast problems
    wait for its slowest and the next wave starts when the whole wave is done.

    ``engine`` is either one :class:`Engine` shared by all workers (fine for remote and thread-safe
    backends), or a zero-argument factory called once per worker thread (each worker gets its own
    models, e.g. its own local KV caches); models of factory-built engines are closed at the end.
    ``on_result`` receives each result as soon as its problem ends, on the calling thread.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"Unknown schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
    engines = _Engines(engine)
    results: list[ProblemResult | None] = [None] * len(questions)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="arbitrage-solve")
    pending: set[Future[ProblemResult]] = set()

    def deliver(done: set[Future[ProblemResult]]) -> None:
        for result in sorted((f.result() for f in done), key=lambda r: r.index):
            results[result.index] = result
            if on_result is not None:
                on_result(result)

    try:
        if schedule == "per_problem":
            pending = {pool.submit(_solve_one, engines, i, q) for i, q in enumerate(questions)}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                deliver(done)
        indexed = list(enumerate(questions)) if schedule == "lockstep" else []
        for first in range(0, len(indexed), concurrency):
            wave = indexed[first : first + concurrency]
            barrier = StepBarrier(len(wave))
            pending = {pool.submit(_solve_one, engines, i, q, barrier) for i, q in wave}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                deliver(done)
    except BaseException:
        # Interrupted (Ctrl-C) or a callback failed: start no new problem, let those in flight finish
        # and hand them over too, so a resumable caller keeps every finished problem.
        for future in pending:
            future.cancel()
        running = {f for f in pending if not f.cancelled()}
        if running:
            logger.warning("stopping: waiting for %d problem(s) in flight", len(running))
            try:
                deliver(wait(running).done)
            except BaseException:
                logger.exception("could not hand over the problems in flight")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        engines.close()
    return [r for r in results if r is not None]
