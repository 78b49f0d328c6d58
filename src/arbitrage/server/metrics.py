"""Prometheus metrics of one server (its own registry on ``app.state``; nothing process-global).

Exposed at ``GET /metrics`` in the Prometheus text format. How the counts relate:

- ``arbitrage_requests_total{endpoint, code}``: every HTTP request, by route (``other`` for unknown
  paths) and status code. Streams count as 200 however they end; a non-streaming request whose client
  left is counted as 499.
- ``arbitrage_rejected_total``: requests refused with 429 because the queue was full (never admitted).
- ``arbitrage_solves_total{outcome}``: admitted requests by how they ended: ``completed`` (answer
  returned), ``cancelled`` (client went away), ``timeout``, ``error``. So for the two completion routes,
  requests = rejected + admitted (Σ outcomes) + those refused by validation or auth (4xx).
- ``arbitrage_steps_total{role, model}``: accepted steps by the role that wrote them;
  ``arbitrage_escalations_total`` = steps the policy escalated to the target (for target-only decoding,
  every step).
- ``arbitrage_model_calls_total{role, model}`` / ``arbitrage_generated_tokens_total{role, model}``: step
  calls and generated tokens per model, discarded draft proposals included (the cost side).
- Histograms (seconds): ``arbitrage_request_duration_seconds{endpoint}`` (arrival to last byte, streams
  included), ``arbitrage_queue_wait_seconds``, ``arbitrage_solve_duration_seconds``,
  ``arbitrage_time_to_first_step_seconds`` (arrival to the first accepted step),
  ``arbitrage_step_call_seconds{role}`` (one model call for one step).
- Gauges: ``arbitrage_queue_depth`` (admitted, waiting for a slot), ``arbitrage_solves_in_progress``,
  ``arbitrage_max_concurrency``, ``arbitrage_max_queue``.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from arbitrage.trace import SolveTrace, StepRecord

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))
_STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))
SOLVE_OUTCOMES = ("completed", "cancelled", "timeout", "error")


class ServerMetrics:
    """The server's counters, gauges and histograms; ``observe_*`` methods are thread-safe."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "arbitrage_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "code"],
            registry=r,
        )
        self.solves = Counter("arbitrage_solves", "Solves by outcome", ["outcome"], registry=r)
        self.rejected = Counter("arbitrage_rejected", "Requests refused with 429 (queue full)", registry=r)
        self.steps = Counter(
            "arbitrage_steps", "Accepted steps by the role that wrote them", ["role", "model"], registry=r
        )
        self.escalations = Counter("arbitrage_escalations", "Steps escalated to the target", registry=r)
        self.model_calls = Counter(
            "arbitrage_model_calls", "Step calls per model", ["role", "model"], registry=r
        )
        self.generated_tokens = Counter(
            "arbitrage_generated_tokens", "Tokens generated per model", ["role", "model"], registry=r
        )
        self.request_seconds = Histogram(
            "arbitrage_request_duration_seconds",
            "Arrival to last byte, by endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "arbitrage_queue_wait_seconds", "Wait for a solve slot", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.solve_seconds = Histogram(
            "arbitrage_solve_duration_seconds", "Solve wall time", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.first_step_seconds = Histogram(
            "arbitrage_time_to_first_step_seconds",
            "Arrival to the first accepted step",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.step_call_seconds = Histogram(
            "arbitrage_step_call_seconds",
            "One model call for one step, by role",
            ["role"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("arbitrage_queue_depth", "Admitted requests waiting for a slot", registry=r)
        self.in_progress = Gauge("arbitrage_solves_in_progress", "Solves in worker threads", registry=r)
        Gauge("arbitrage_max_concurrency", "Configured solve slots", registry=r).set(max_concurrency)
        Gauge("arbitrage_max_queue", "Configured queue length", registry=r).set(max_queue)
        for outcome in SOLVE_OUTCOMES:  # export zeros so that sums are well defined from the start
            self.solves.labels(outcome=outcome)

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, code=str(code)).inc()
        self.request_seconds.labels(endpoint=endpoint).observe(seconds)

    def observe_step(self, record: StepRecord) -> None:
        """One accepted step: who wrote it, and the model calls it took."""
        self.steps.labels(role=record.role, model=record.model).inc()
        if record.escalated:
            self.escalations.inc()
        for role, output in (("draft", record.draft), ("target", record.target)):
            if output is not None:
                self.step_call_seconds.labels(role=role).observe(output.seconds)

    def observe_solve_usage(self, trace: SolveTrace) -> None:
        """A solve that ran to its end (or to a step boundary after a stop): wall time, calls, tokens."""
        self.solve_seconds.observe(trace.wall_seconds)
        for role, usage in trace.usage.items():
            if usage.calls:
                self.model_calls.labels(role=role, model=usage.model).inc(usage.calls)
                self.generated_tokens.labels(role=role, model=usage.model).inc(usage.generated_tokens)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class SolveOutcome:
    """Records a request's solve outcome in the metrics exactly once."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics
        self.value: str | None = None

    def set(self, value: str) -> None:
        if self.value is None:
            self.value = value
            self.metrics.solves.labels(outcome=value).inc()
