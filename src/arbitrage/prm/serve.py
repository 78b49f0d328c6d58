"""Serve any arbitrage step scorer over HTTP with vLLM's pooling protocol (what ``http:`` PRMs speak).

``create_pooling_app(scorer, model)`` answers ``POST /pooling`` with ``{"model", "input"}`` where the
input is the Qwen2.5-Math-PRM text (ChatML with the steps each followed by ``<extra_0>``, as
:func:`arbitrage.prm.remote.render_qwen_prm` writes it) or ``{"model", "messages"}`` in the same
layout, and ``GET /v1/models``. Each step gets ``[1 − r, r]``, as vLLM's STEP pooler returns for a
two-class PRM. So a machine with a GPU-less judge or the arithmetic verifier can serve other machines,
and the remote scorer can be tested against a real scorer. Run it with uvicorn::

    uvicorn.run(create_pooling_app(load_scorer("arith"), "arith"), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from arbitrage.errors import ArbitrageError
from arbitrage.prm.base import StepScorer
from arbitrage.prm.remote import STEP_TAG

_TURN = re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>", re.DOTALL)


class PoolingRequest(BaseModel):
    """The subset of vLLM's pooling request this server reads (other vLLM fields are accepted)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[str] | None = None
    messages: list[dict[str, Any]] | None = None


def split_prm_text(text: str) -> tuple[str, list[str]]:
    """(question, steps) from a Qwen2.5-Math-PRM input text."""
    turns = {role: content for role, content in _TURN.findall(text)}
    if "user" not in turns or "assistant" not in turns:
        raise ValueError("input is not ChatML with a user and an assistant turn")
    return turns["user"], _steps(turns["assistant"])


def _steps(assistant: str) -> list[str]:
    if STEP_TAG not in assistant:
        raise ValueError(f"the assistant turn has no {STEP_TAG} step tags")
    return [s.strip() for s in assistant.split(STEP_TAG)[:-1]]


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "code": status}}
    )


def create_pooling_app(scorer: StepScorer, model: str) -> FastAPI:
    """An app serving ``scorer`` as the reward model ``model``."""
    app = FastAPI(title=f"arbitrage PRM: {scorer.name}")
    app.state.scorer = scorer
    app.state.model = model
    app.state.lock = threading.Lock()  # local scorers hold one KV cache: one request at a time

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "arbitrage"}]}

    @app.post("/pooling", response_model=None)
    def pooling(request: PoolingRequest) -> dict[str, Any] | JSONResponse:
        if request.model is not None and request.model != model:
            return _error(404, f"The model `{request.model}` does not exist.", "NotFoundError")
        try:
            if request.messages is not None:
                turns = {m.get("role"): str(m.get("content", "")) for m in request.messages}
                items = [(turns.get("user", ""), _steps(turns.get("assistant", "")))]
            elif request.input is not None:
                texts = [request.input] if isinstance(request.input, str) else request.input
                items = [split_prm_text(t) for t in texts]
            else:
                return _error(400, "Either input or messages is required", "BadRequestError")
        except ValueError as exc:
            return _error(400, f"Not a process-reward input: {exc}", "BadRequestError")
        data = []
        tokens = 0
        for index, (question, steps) in enumerate(items):
            if not steps:
                data.append({"index": index, "object": "pooling", "data": []})
                continue
            try:
                with app.state.lock:
                    result = scorer.score(question, steps, only_last=False)
            except ArbitrageError as exc:
                return _error(400, str(exc), "BadRequestError")
            tokens += result.prompt_tokens
            pairs = [[round(1.0 - r, 6), round(r, 6)] for r in result.rewards]
            data.append({"index": index, "object": "pooling", "data": pairs})
        return {
            "id": f"pool-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": model,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
        }

    return app
