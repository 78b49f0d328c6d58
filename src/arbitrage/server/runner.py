"""Bounded concurrency for solves: admission, a queue, worker threads, deadlines and cancellation.

Solves are synchronous (generators block; llama.cpp serialises the calls on each model), so each runs
in a thread of a pool of ``max_concurrency`` workers, and the event loop stays free. A request is

1. admitted, or refused at once with 429 and ``Retry-After`` when ``running + waiting`` already equals
   ``max_concurrency + max_queue``;
2. queued until a slot is free, its deadline passes (504) or its client leaves;
3. run in a worker thread, which passes each accepted step to the event loop as an event;
4. stopped at the next step boundary (the engine's ``should_stop``) once its client disconnects, its
   deadline passes or a stop sequence was written. A step in progress cannot be interrupted, so the slot
   is freed only when the thread has really finished: at most ``max_concurrency`` solves ever run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from arbitrage.server.errors import APIError
from arbitrage.server.metrics import ServerMetrics
from arbitrage.trace import SolveTrace, StepRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Started:
    """The worker built its policy and is about to solve."""

    policy: str  # the policy's description, e.g. "random(p=0.3)"


@dataclass(frozen=True, slots=True)
class StepDone:
    """One accepted step."""

    record: StepRecord
    text: str  # answer text this step releases (may be empty: held back for a stop sequence)


@dataclass(frozen=True, slots=True)
class SolveDone:
    """The solve ended (normally, or at a step boundary after a stop request)."""

    trace: SolveTrace
    text: str  # the rest of the answer text (what was held back)


@dataclass(frozen=True, slots=True)
class SolveFailed:
    """The worker raised."""

    error: Exception


Event = Started | StepDone | SolveDone | SolveFailed


class SolveTimeout(Exception):
    """The request's deadline passed (in the queue or while solving)."""


class ClientGone(Exception):
    """The client disconnected before its solve started."""


class Execution:
    """One request's solve as both sides see it: a stop flag for the worker, events for the loop."""

    def __init__(self, timeout: float, arrived: float | None = None) -> None:
        self.arrived = time.monotonic() if arrived is None else arrived
        self.deadline = self.arrived + timeout
        self.timeout = timeout
        self.stop_requested = threading.Event()  # set by the loop; read by the worker between steps
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.queue_seconds = 0.0  # time waited for a slot
        self.extra_stop: Callable[[], bool] = lambda: False  # e.g. "a stop sequence was written"

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def stop(self) -> None:
        self.stop_requested.set()

    def should_stop(self) -> bool:
        """Asked by the engine before each step (worker thread)."""
        return self.stop_requested.is_set() or self.extra_stop() or time.monotonic() >= self.deadline

    async def next_event(self) -> Event:
        """The worker's next event; raises :class:`SolveTimeout` (and stops the worker) at the deadline."""
        event = await self.next_event_within(None)
        assert event is not None
        return event

    async def next_event_within(self, wait: float | None) -> Event | None:
        """Like :meth:`next_event`, but returns None when ``wait`` seconds pass first (for keep-alives)."""
        remaining = self.remaining()
        heartbeat = wait is not None and wait < remaining
        try:
            limit = wait if heartbeat and wait is not None else max(0.0, remaining)
            return await asyncio.wait_for(self.events.get(), timeout=limit)
        except TimeoutError:
            if heartbeat:
                return None
            self.stop()
            raise SolveTimeout from None


Work = Callable[[Execution, Callable[[Event], None]], None]  # runs in a worker thread; emits events


class SolveRunner:
    """Admission control and the worker pool of one server (lives on ``app.state``)."""

    def __init__(self, max_concurrency: int, max_queue: int, metrics: ServerMetrics) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.metrics = metrics
        self.waiting = 0  # admitted, waiting for a slot
        self.running = 0  # holding a slot (thread running, possibly finishing a cancelled solve)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="arbitrage-solve")
        self._active: set[Execution] = set()
        self._mean_seconds: float | None = None  # moving average of slot hold times, for Retry-After
        self._closed = False

    @property
    def stopping(self) -> int:
        """Running solves asked to stop (client gone, deadline passed) that are finishing their step."""
        return sum(1 for execution in self._active if execution.stop_requested.is_set())

    def retry_after(self) -> int:
        """Seconds until a queue place is likely to free up (≥ 1)."""
        mean = self._mean_seconds if self._mean_seconds is not None else 1.0
        return max(1, min(600, math.ceil(mean / self.max_concurrency)))

    def _admit(self) -> None:
        if self._closed:
            raise APIError(503, "The server is shutting down", type="server_error", code="shutting_down")
        if self.running + self.waiting >= self.max_concurrency + self.max_queue:
            self.metrics.rejected.inc()
            wait = self.retry_after()
            raise APIError(
                429,
                f"The server is busy: {self.running} requests running and {self.waiting} queued "
                f"(limits: {self.max_concurrency} running, {self.max_queue} queued). "
                f"Retry after {wait} s.",
                type="rate_limit_error",
                code="server_busy",
                headers={"Retry-After": str(wait)},
            )
        self.waiting += 1
        self.metrics.queue_depth.set(self.waiting)

    async def _acquire(self, execution: Execution, gone: asyncio.Event) -> None:
        """Wait for a slot; raise SolveTimeout or ClientGone instead when those come first."""
        acquire = asyncio.ensure_future(self._slots.acquire())
        leave = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait(
                {acquire, leave}, timeout=max(0.0, execution.remaining()), return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:  # the request task itself was cancelled
            leave.cancel()
            if acquire.done() and not acquire.cancelled():
                self._slots.release()
            else:
                acquire.cancel()
            raise
        leave.cancel()
        if not acquire.done():
            acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquire
        got = acquire.done() and not acquire.cancelled()
        if got and not gone.is_set() and execution.remaining() > 0:
            return
        if got:
            self._slots.release()
        raise ClientGone if gone.is_set() else SolveTimeout

    async def start(self, execution: Execution, work: Work, gone: asyncio.Event) -> None:
        """Admit, queue and start ``work`` in a worker thread; events then arrive on ``execution``.

        Raises :class:`APIError` (429/503), :class:`SolveTimeout` or :class:`ClientGone` when the work
        never starts.
        """
        self._admit()
        try:
            await self._acquire(execution, gone)
        finally:
            self.waiting -= 1
            self.metrics.queue_depth.set(self.waiting)
        execution.queue_seconds = time.monotonic() - execution.arrived
        self.metrics.queue_seconds.observe(execution.queue_seconds)
        self.running += 1
        self.metrics.in_progress.set(self.running)
        self._active.add(execution)
        loop = asyncio.get_running_loop()

        def emit(event: Event) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
                loop.call_soon_threadsafe(execution.events.put_nowait, event)

        def run() -> None:
            try:
                work(execution, emit)
            except Exception as exc:  # reported to the request, which answers with an error
                emit(SolveFailed(exc))

        started = time.monotonic()
        future = loop.run_in_executor(self._executor, run)
        future.add_done_callback(lambda _: self._release(execution, time.monotonic() - started))

    def _release(self, execution: Execution, seconds: float) -> None:
        self._active.discard(execution)
        self.running -= 1
        self.metrics.in_progress.set(self.running)
        self._mean_seconds = (
            seconds if self._mean_seconds is None else 0.7 * self._mean_seconds + 0.3 * seconds
        )
        self._slots.release()

    def shutdown(self) -> None:
        """Refuse new work, stop running solves at their next step and wait for the threads."""
        self._closed = True
        for execution in list(self._active):
            execution.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)
