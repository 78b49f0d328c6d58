"""The FastAPI application: OpenAI-compatible routes over the step loop.

``create_app(settings, run=... | generators=..., engine_factory=...)`` builds an app whose state lives on
``app.state`` (nothing module-global). Routes:

- ``POST /v1/chat/completions``, ``POST /v1/completions``: one solve per request, streamed as
  server-sent events when ``stream`` is true (one chunk per accepted step, then ``[DONE]``);
- ``GET /v1/models`` (and ``/v1/models/{id}``): the served id and its draft/target;
- ``GET /health`` (never needs the API key), ``GET /metrics`` (Prometheus text).

A request's life: its body is read and validated (400), its job resolved against the settings
(:mod:`.jobs`), then :class:`~.runner.SolveRunner` admits it (or 429), queues it and runs the solve in a
worker thread; a disconnect watcher stops the solve at the next step boundary when the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from arbitrage.backends.base import Generator
from arbitrage.concurrent import Solver
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ArbitrageError
from arbitrage.policies import RoutingPolicy
from arbitrage.prm.base import StepScorer
from arbitrage.run import Run
from arbitrage.server.errors import APIError, bad_request, error_body, install_error_handlers
from arbitrage.server.jobs import PolicyCache, ServerPlan, SolveJob, build_job, needs_scorer_for
from arbitrage.server.metrics import CONTENT_TYPE, ServerMetrics, SolveOutcome
from arbitrage.server.responses import (
    arbitrage_report,
    chunk,
    completion_body,
    finish_reason,
    new_id,
    now,
    sse,
    step_report,
    usage,
)
from arbitrage.server.runner import (
    ClientGone,
    Event,
    Execution,
    SolveDone,
    SolveFailed,
    SolveRunner,
    SolveTimeout,
    Started,
    StepDone,
)
from arbitrage.server.schemas import ChatCompletionRequest, CompletionRequest
from arbitrage.server.settings import ServerSettings, load_server_settings
from arbitrage.server.text import AnswerText
from arbitrage.server.transport import (
    DisconnectWatcher,
    RequestMetrics,
    SolveStreamResponse,
    check_bearer,
    read_body,
)
from arbitrage.trace import SolveTrace

logger = logging.getLogger(__name__)


# builds the solver of one request (Engine is one); the server's only meaning of "engine factory"
EngineFactory = Callable[[Generator, Generator, RoutingPolicy, EngineConfig], Solver]
ScorerLoader = Callable[[ServerSettings], StepScorer]


def _load_prm(settings: ServerSettings) -> StepScorer:
    """The PRM for generators the caller gave (a :class:`Run` loads its own): once, its calls serialised
    across the solve slots."""
    from arbitrage.prm.registry import ScorerOptions, load_scorer
    from arbitrage.run import SerialScorer

    return SerialScorer(load_scorer(settings.prm, ScorerOptions(n_ctx=settings.n_ctx)))


@dataclass
class ServerState:
    """Everything a request handler needs (``app.state.arbitrage``), set up by the lifespan."""

    settings: ServerSettings
    draft: Generator
    target: Generator
    base_options: dict[str, Any]  # policy name -> the server's options of it; requests override some
    policy_name: str  # description of the served policy, e.g. "random(p=0.5)"
    runner: SolveRunner
    metrics: ServerMetrics
    engine_factory: EngineFactory
    policies: PolicyCache = field(default_factory=PolicyCache)
    created: int = field(default_factory=now)

    @property
    def models(self) -> dict[str, str]:
        return {"draft": self.draft.name, "target": self.target.name}


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.arbitrage
    return state


async def require_api_key(request: Request) -> None:
    check_bearer(request, _state(request).settings.api_key)


# -- the solve, in a worker thread ---------------------------------------------------------------------


def solve_work(
    state: ServerState, job: SolveJob, answer: AnswerText, execution: Execution, emit: Callable[[Event], None]
) -> None:
    """Build the policy, run the step loop, and emit an event per accepted step (worker thread)."""
    policy = state.policies.get(job.policy, job.policy_options)
    engine = state.engine_factory(state.draft, state.target, policy, job.config)
    emit(Started(policy.name))

    def on_step(record: Any) -> None:
        state.metrics.observe_step(record)
        emit(StepDone(record, answer.add_step(record.text)))

    trace = engine.solve(job.question, on_step=on_step, should_stop=execution.should_stop)
    state.metrics.observe_solve_usage(trace)
    emit(SolveDone(trace, answer.finish()))


def _failure(error: Exception) -> APIError:
    if isinstance(error, APIError):
        return error
    if isinstance(error, ArbitrageError):
        return bad_request(str(error))
    logger.error("solve failed", exc_info=error)
    return APIError(500, f"The solve failed: {type(error).__name__}: {error}", type="server_error")


def _timeout(job: SolveJob) -> APIError:
    return APIError(
        504,
        f"The request did not finish within its timeout of {job.timeout:g} s (queue wait included) "
        "and was stopped",
        type="timeout_error",
        code="timeout",
    )


# -- responses -----------------------------------------------------------------------------------------


def _report(
    state: ServerState, job: SolveJob, execution: Execution, answer: AnswerText, trace: SolveTrace
) -> dict[str, Any]:
    """The ``arbitrage`` extension of a finished solve: the body's field, or the stream's last chunk."""
    return arbitrage_report(
        trace,
        models=state.models,
        queue_seconds=execution.queue_seconds,
        include_steps=job.include_steps,
        stop_sequence=answer.stopped,
    )


async def _collect(
    state: ServerState, job: SolveJob, execution: Execution, answer: AnswerText, outcome: SolveOutcome
) -> JSONResponse:
    """Wait for the whole solve and answer with one JSON body."""
    parts: list[str] = []
    while True:
        try:
            event = await execution.next_event()
        except SolveTimeout:
            outcome.set("timeout")
            raise _timeout(job) from None
        if isinstance(event, StepDone):
            if event.record.index == 0:
                state.metrics.first_step_seconds.observe(time.monotonic() - execution.arrived)
            parts.append(event.text)
        elif isinstance(event, SolveFailed):
            outcome.set("error")
            raise _failure(event.error)
        elif isinstance(event, SolveDone):
            trace = event.trace
            if trace.stop_reason == "cancelled" and not answer.stopped:
                if execution.stop_requested.is_set():
                    outcome.set("cancelled")
                    raise APIError(499, "The client closed the request", code="client_closed_request")
                outcome.set("timeout")
                raise _timeout(job)
            parts.append(event.text)
            report = _report(state, job, execution, answer, trace)
            outcome.set("completed")
            body = completion_body(job, new_id(job.kind), now(), "".join(parts), trace, report)
            return JSONResponse(body)


async def _stream(
    state: ServerState, job: SolveJob, execution: Execution, answer: AnswerText, outcome: SolveOutcome
) -> AsyncIterator[str]:
    """Server-sent events: a chunk per accepted step, a final chunk with the finish reason, ``[DONE]``."""
    rid, created = new_id(job.kind), now()
    try:
        if job.kind == "chat":
            yield sse(chunk(job, rid, created, text="", role=True))
        keepalive = state.settings.sse_keepalive or None
        while True:
            try:
                event = await execution.next_event_within(keepalive)
            except SolveTimeout:
                outcome.set("timeout")
                yield sse(_timeout(job).body())
                return
            if event is None:
                yield ": keep-alive\n\n"  # an SSE comment: keeps proxies and clients from timing out
            elif isinstance(event, StepDone):
                if event.record.index == 0:
                    state.metrics.first_step_seconds.observe(time.monotonic() - execution.arrived)
                extension = {"step": step_report(event.record, with_text=False)}
                yield sse(chunk(job, rid, created, text=event.text, extension=extension))
            elif isinstance(event, SolveFailed):
                outcome.set("error")
                yield sse(_failure(event.error).body())
                return
            elif isinstance(event, SolveDone):
                trace = event.trace
                if (
                    trace.stop_reason == "cancelled"
                    and not answer.stopped
                    and not execution.stop_requested.is_set()
                ):
                    outcome.set("timeout")
                    yield sse(_timeout(job).body())
                    return
                if event.text:
                    yield sse(chunk(job, rid, created, text=event.text))
                report = _report(state, job, execution, answer, trace)
                reason = finish_reason(trace, answer.stopped)
                final_text = None if job.kind == "chat" else ""
                yield sse(chunk(job, rid, created, text=final_text, finish=reason, extension=report))
                if job.include_usage:
                    yield sse(chunk(job, rid, created, usage_body=usage(trace), empty=True))
                outcome.set("completed")
                yield sse("[DONE]")
                return
    finally:
        execution.stop()  # the client left or the stream ended: stop at the next step boundary
        outcome.set("cancelled")  # no-op when an outcome was recorded


async def _complete(
    request: Request, body_model: type[ChatCompletionRequest] | type[CompletionRequest]
) -> Response:
    arrived = time.monotonic()
    state = _state(request)
    settings = state.settings
    body = await read_body(request, body_model, settings.max_request_bytes)
    job = build_job(body, settings, state.base_options)
    execution = Execution(job.timeout, arrived)
    answer = AnswerText(settings.separator, job.stops)
    execution.extra_stop = lambda: answer.stopped
    outcome = SolveOutcome(state.metrics)
    watcher = DisconnectWatcher(request, execution.stop)
    try:
        try:
            await state.runner.start(execution, partial(solve_work, state, job, answer), watcher.gone)
        except APIError:
            raise  # refused (429/503): not admitted, no outcome
        except SolveTimeout:
            outcome.set("timeout")
            raise _timeout(job) from None
        except ClientGone:
            outcome.set("cancelled")
            raise APIError(499, "The client closed the request", code="client_closed_request") from None
        try:
            first = await execution.next_event()  # Started, or the policy could not be built
        except SolveTimeout:
            outcome.set("timeout")
            raise _timeout(job) from None
        if isinstance(first, SolveFailed):
            outcome.set("error")
            raise _failure(first.error)
        if job.stream:
            watcher.close()  # from here on the streaming response watches the connection itself

            def closed() -> None:
                execution.stop()
                outcome.set("cancelled")  # no-op when the stream recorded its outcome

            return SolveStreamResponse(
                _stream(state, job, execution, answer, outcome),
                on_close=closed,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _collect(state, job, execution, answer, outcome)
    except BaseException:
        execution.stop()
        raise
    finally:
        watcher.close()


def _model_cards(state: ServerState) -> list[dict[str, Any]]:
    s = state.settings
    return [
        {
            "id": s.model_id,
            "object": "model",
            "created": state.created,
            "owned_by": "arbitrage",
            "root": state.draft.name,
            "arbitrage": {
                "role": "speculative",
                **state.models,
                "policy": state.policy_name,
                "policies": list(s.served_policies),
            },
        },
        *(
            {
                "id": f"{s.model_id}/{role}",
                "object": "model",
                "created": state.created,
                "owned_by": "arbitrage",
                "root": name,
                "arbitrage": {"role": role, "model": name, "policy": role},
            }
            for role, name in state.models.items()
        ),
    ]


# -- the app -------------------------------------------------------------------------------------------


def create_app(
    settings: ServerSettings | ServerPlan | None = None,
    *,
    run: Run | None = None,
    generators: tuple[Generator, Generator] | None = None,
    scorer_loader: ScorerLoader = _load_prm,
    engine_factory: EngineFactory = Engine,
) -> FastAPI:
    """The server app, over one of three sources of models:

    - ``run``: an open :class:`~arbitrage.run.Run` of ``plan.run_spec()`` (``arbitrage serve`` opens one,
      so a bad model fails before the server starts); its draft, target, PRM and served policy are used
      and left open at shutdown;
    - ``generators`` (draft, target): used as given and left open at shutdown; a servable policy that
      scores steps (rsd, oracle) gets ``scorer_loader(settings)``, loaded at startup, once, and closed at
      shutdown;
    - neither: the app opens a :class:`~arbitrage.run.Run` of ``settings`` at startup, closed at shutdown.

    ``settings`` are resolved here (policies checked, their options built: a bad option fails now)
    unless they come resolved as a :class:`~arbitrage.server.jobs.ServerPlan`.
    """
    if not isinstance(settings, ServerPlan):
        settings = ServerPlan.resolve(settings or load_server_settings())
    plan = settings
    settings = plan.settings
    policies = PolicyCache()
    if run is not None:
        policies.scorer = run.scorer
        policies.add(*plan.served, run.policy)
        generators = (run.draft, run.target)
    load_scorer_at_start = generators is not None and needs_scorer_for(settings) and policies.scorer is None
    default_name = (
        policies.get(*plan.served).name if generators is not None and not load_scorer_at_start else None
    )
    metrics = ServerMetrics(settings.max_concurrency, settings.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            policy_name = default_name
            if generators is not None:
                draft, target = generators
            else:  # the app's own run: models, PRM and the served policy load through it
                own = await asyncio.to_thread(Run(plan.run_spec()).open)
                stack.callback(own.close)
                draft, target = own.draft, own.target
                policies.scorer = own.scorer
                policies.add(*plan.served, own.policy)
                policy_name = own.policy.name
            if load_scorer_at_start:
                policies.scorer = await asyncio.to_thread(scorer_loader, settings)
                stack.callback(_close_quietly, policies.scorer)
                stack.callback(setattr, policies, "scorer", None)
                default = await asyncio.to_thread(policies.get, *plan.served)
                policy_name = default.name
            assert policy_name is not None
            state = ServerState(
                settings=settings,
                draft=draft,
                target=target,
                base_options=plan.base_options,
                policy_name=policy_name,
                runner=SolveRunner(settings.max_concurrency, settings.max_queue, metrics),
                metrics=metrics,
                engine_factory=engine_factory,
                policies=policies,
            )
            app.state.arbitrage = state
            logger.info(
                "serving %s: draft %s, target %s, policy %s",
                settings.model_id,
                draft.name,
                target.name,
                policy_name,
            )
            yield
            await asyncio.to_thread(state.runner.shutdown)

    app = FastAPI(
        title="arbitrage",
        summary="Step-level speculative reasoning behind an OpenAI-compatible API",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.add_middleware(RequestMetrics, metrics=metrics)
    install_error_handlers(app)
    auth = [Depends(require_api_key)]

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(request: Request) -> Response:
        return await _complete(request, ChatCompletionRequest)

    @app.post("/v1/completions", dependencies=auth)
    async def completions(request: Request) -> Response:
        return await _complete(request, CompletionRequest)

    @app.get("/v1/models", dependencies=auth)
    async def list_models(request: Request) -> dict[str, Any]:
        return {"object": "list", "data": _model_cards(_state(request))}

    @app.get("/v1/models/{model_id:path}", dependencies=auth)
    async def get_model(model_id: str, request: Request) -> dict[str, Any]:
        for card in _model_cards(_state(request)):
            if card["id"] == model_id:
                return card
        raise APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        state = _state(request)
        return {
            "status": "ok",
            "model": state.settings.model_id,
            **state.models,
            "policy": state.policy_name,
            "running": state.runner.running,
            "queued": state.runner.waiting,
            "max_concurrency": state.runner.max_concurrency,
            "max_queue": state.runner.max_queue,
        }

    @app.get("/metrics", dependencies=auth)
    async def prometheus_metrics(request: Request) -> Response:
        return Response(_state(request).metrics.exposition(), media_type=CONTENT_TYPE)

    return app


def _close_quietly(thing: Generator | StepScorer) -> None:
    with contextlib.suppress(Exception):
        thing.close()


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory arbitrage.server.app:app_from_env`` (settings from the env)."""
    return create_app(load_server_settings())


__all__ = ["ServerState", "create_app", "error_body"]
