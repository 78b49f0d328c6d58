"""Response bodies and stream chunks in the OpenAI shapes, with the ``arbitrage`` extension object.

**usage** for a two-model system (documented in docs/serving.md):

- ``prompt_tokens``: tokens of the formatted prompt (chat template + question), counted by the first
  model called for the first step (the draft, or the target under target-only decoding).
- ``completion_tokens``: tokens of the returned steps, each counted by the model that wrote it (what the
  client received; a step cut by a stop sequence is counted whole).
- ``total_tokens``: their sum.

What the system really spent, including discarded draft proposals and every re-read of the context, is
in ``arbitrage.usage`` per model (``calls``, ``generated_tokens``, ``prompt_tokens``, ``prefill_tokens``,
seconds, KV reuse).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from arbitrage.server.jobs import SolveJob
from arbitrage.trace import SolveTrace, StepRecord

FinishReason = Literal["stop", "length"]


def new_id(kind: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def finish_reason(trace: SolveTrace, stop_sequence: bool) -> FinishReason:
    """OpenAI's finish reason: "length" when a step or token limit ended the answer, else "stop"."""
    if stop_sequence:
        return "stop"
    return "length" if trace.stop_reason in ("max_steps", "max_tokens") else "stop"


def usage(trace: SolveTrace) -> dict[str, int]:
    prompt = 0
    if trace.steps:
        first = trace.steps[0]
        prompt = (first.draft or first.kept).prompt_tokens
    completion = sum(step.tokens for step in trace.steps)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def step_report(record: StepRecord, with_text: bool = True) -> dict[str, Any]:
    """One step: who wrote it, the policy's decision and evidence, and the seconds each part took."""
    decision = record.decision
    report: dict[str, Any] = {
        "index": record.index,
        "role": record.role,
        "model": record.model,
        "escalated": record.escalated,
        "tokens": record.tokens,
        "finish_reason": str(record.finish_reason),
        "decision": {
            "reason": decision.reason,
            "score": decision.score,
            "threshold": decision.threshold,
            "draft_reward": decision.draft_reward,
            "target_reward": decision.target_reward,
            "advantage": decision.advantage,
            "info": decision.info,
        },
        "seconds": {
            "draft": record.draft.seconds if record.draft else None,
            "target": record.target.seconds if record.target else None,
            "policy": record.policy_seconds,
        },
        "draft_tokens": record.draft.tokens if record.draft else None,
        "target_tokens": record.target.tokens if record.target else None,
        "extra_target_samples": record.extra_target_samples,
    }
    if with_text:
        report["text"] = record.text
    return report


def arbitrage_report(
    trace: SolveTrace,
    *,
    models: dict[str, str],
    queue_seconds: float,
    include_steps: bool,
    stop_sequence: bool,
) -> dict[str, Any]:
    """The ``arbitrage`` extension object of a finished solve (built from ``SolveTrace.to_dict()``)."""
    data = trace.to_dict()
    steps_by_role = {role: sum(1 for s in trace.steps if s.role == role) for role in ("draft", "target")}
    report: dict[str, Any] = {
        "policy": data["policy"],
        "models": models,  # role → model name
        "stop_reason": "stop_sequence" if stop_sequence else data["stop_reason"],
        "answer": data["answer"],
        "num_steps": data["num_steps"],
        "steps_by_model": steps_by_role,
        "acceptance_rate": data["acceptance_rate"],
        "token_acceptance_rate": data["token_acceptance_rate"],
        "target_call_rate": data["target_call_rate"],
        "usage": data["usage"],
        "seconds": {
            "queue": queue_seconds,
            "solve": data["wall_seconds"],
            "policy": data["policy_seconds"],
        },
    }
    if include_steps:
        report["steps"] = [step_report(s) for s in trace.steps]
    return report


def completion_body(
    job: SolveJob, response_id: str, created: int, text: str, trace: SolveTrace, report: dict[str, Any]
) -> dict[str, Any]:
    """The non-streaming response of either endpoint."""
    reason = finish_reason(trace, report["stop_reason"] == "stop_sequence")
    if job.kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": reason,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        obj = "text_completion"
    return {
        "id": response_id,
        "object": obj,
        "created": created,
        "model": job.model,
        "system_fingerprint": None,
        "choices": [choice],
        "usage": usage(trace),
        "arbitrage": report,
    }


def chunk(
    job: SolveJob,
    response_id: str,
    created: int,
    *,
    text: str | None = None,
    role: bool = False,
    finish: FinishReason | None = None,
    extension: dict[str, Any] | None = None,
    usage_body: dict[str, int] | None = None,
    empty: bool = False,
) -> dict[str, Any]:
    """One stream chunk. ``empty``: no choices (the final usage chunk)."""
    if job.kind == "chat":
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    body: dict[str, Any] = {
        "id": response_id,
        "object": obj,
        "created": created,
        "model": job.model,
        "system_fingerprint": None,
        "choices": [] if empty else [choice],
    }
    if job.include_usage:
        body["usage"] = usage_body
    if extension is not None:
        body["arbitrage"] = extension
    return body


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event carrying ``data`` (a dict as JSON, or a literal such as ``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n"
