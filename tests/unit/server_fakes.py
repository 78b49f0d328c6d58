"""Test doubles for the server tests: scripted generators that can be held at a gate or slowed down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from arbitrage.backends.base import StepContext, StepOutput, StepParams
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.server import BackgroundServer, ServerSettings, create_app

DRAFT_STEPS = ["draft one", "draft two", "draft three", "so the answer is \\boxed{4}"]
TARGET_STEPS = ["target one", "target two", "target three", "so the answer is \\boxed{5}"]


class GatedGenerator:
    """A scripted generator whose steps wait for permits (``release``) once ``gated``; and/or sleep."""

    def __init__(
        self, inner: ScriptedGenerator, *, gated: bool = False, seconds_per_token: float = 0.0
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.gated = gated
        self.seconds_per_token = seconds_per_token
        self.entered = 0  # generate_step calls begun
        self._permits = threading.Semaphore(0)
        self._lock = threading.Lock()

    @property
    def calls(self) -> list[StepContext]:
        return self.inner.calls

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._permits.release()

    def open(self) -> None:
        """Let every step through from now on (and the ones waiting)."""
        self.gated = False
        self.release(1000)

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        with self._lock:
            self.entered += 1
        if self.gated and not self._permits.acquire(timeout=60):
            raise RuntimeError("test gate never opened")
        output = self.inner.generate_step(context, params)
        if self.seconds_per_token:
            time.sleep(output.tokens * self.seconds_per_token)
        return output

    def close(self) -> None:
        self.inner.close()


def scripted_pair(
    draft_steps: list[str] | None = None, target_steps: list[str] | None = None
) -> tuple[ScriptedGenerator, ScriptedGenerator]:
    return (
        ScriptedGenerator("draft-m", draft_steps or DRAFT_STEPS),
        ScriptedGenerator("target-m", target_steps or TARGET_STEPS),
    )


def settings(**overrides: object) -> ServerSettings:
    """Server settings for tests (model specs unused: generators are injected)."""
    values: dict[str, object] = {
        "draft": "scripted", "target": "scripted", "policy": "random", "policy_options": {"p": 0.5}
    }  # fmt: skip
    values.update(overrides)
    return ServerSettings(**values)  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll ``condition`` (a guard against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.005)


@contextmanager
def running_server(
    draft: object, target: object, **overrides: object
) -> Iterator[tuple[BackgroundServer, httpx.Client]]:
    """A real uvicorn server on a free loopback port, and an httpx client for it."""
    app = create_app(settings(**overrides), generators=(draft, target))  # type: ignore[arg-type]
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield server, client


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` matching ``labels`` in a Prometheus exposition (0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
