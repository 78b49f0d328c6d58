"""Request and response bodies in the OpenAI shapes, plus the ``arbitrage`` request extension.

Requests reject unknown fields (OpenAI does too). Fields the API defines but this server cannot honour
(tools, logprobs, n > 1, penalties, ...) are declared so that their use gets a specific 400 message
from :mod:`arbitrage.server.jobs` instead of a generic "unknown parameter".

Responses are built as plain dicts by :mod:`arbitrage.server.responses`; the models here document and
type-check their shape (the tests validate responses against them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ArbitrageOptions(_Strict):
    """The ``arbitrage`` request extension: per-request routing and limits, within server limits.

    Send it as a top-level ``arbitrage`` field (with the openai client: ``extra_body={"arbitrage": {...}}``).
    """

    policy: str | None = None  # one of the server's allowed policies; default: the served one
    policy_params: dict[str, StrictFloat | StrictInt] = Field(default_factory=dict)  # e.g. {"p": 0.2}
    max_steps: int | None = Field(default=None, ge=1)  # stop after this many steps
    max_step_tokens: int | None = Field(default=None, ge=1)  # cap on tokens per step
    stop_on_boxed: bool | None = None  # end at the first step with a \boxed{} answer
    timeout: float | None = Field(default=None, gt=0)  # seconds; at most the server's request_timeout
    include_steps: bool = True  # per-step details in the response's ``arbitrage`` object


class StreamOptions(_Strict):
    include_usage: bool = False  # send a last chunk with ``usage`` (and empty ``choices``)
    include_obfuscation: bool | None = None  # accepted and ignored (loopback/private serving)


class _SamplingRequest(_Strict):
    """Fields shared by chat and text completions."""

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)  # solution tokens (checked at step boundaries)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None  # accepted and ignored
    metadata: dict[str, str] | None = None  # accepted and ignored
    store: bool | None = None  # accepted; nothing is stored
    service_tier: str | None = None  # accepted and ignored
    arbitrage: ArbitrageOptions | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    """A non-text content part (image, audio, file): parsed only to be refused with a clear message."""

    model_config = ConfigDict(extra="allow")
    type: Literal["image_url", "input_audio", "file", "refusal"]


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart | OtherPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  # same as max_tokens
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None  # accepted and ignored


class CompletionRequest(_SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)


# -- responses ---------------------------------------------------------------------------------------


class Usage(BaseModel):
    """OpenAI usage, counted for a two-model system (see docs/serving.md)."""

    prompt_tokens: int  # tokens of the formatted prompt, in the tokenizer of the first model called
    completion_tokens: int  # tokens of the returned steps, each in the tokenizer of its model
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage
    arbitrage: dict[str, Any]  # the extension object (see responses.arbitrage_report)


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None
    arbitrage: dict[str, Any] | None = None  # the step this chunk carries, or the summary on the last


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    """A text completion; streamed chunks have the same shape with ``finish_reason`` null until the end."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None = None
    arbitrage: dict[str, Any] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "arbitrage"
    root: str  # the underlying model (for the arbitrage id: the draft)
    arbitrage: dict[str, Any]  # role ("speculative", "draft", "target") and the models behind it


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(_Strict):
    message: str = Field(min_length=1)  # for users: what was wrong and, where it helps, what to do
    type: str  # invalid_request_error, authentication_error, ..., server_error
    param: str | None  # the request field at fault, if one is
    code: str | None  # a machine-readable reason, e.g. "invalid_json", "timeout"


class ErrorResponse(_Strict):
    """Every error the server answers (``arbitrage.server.errors``), exactly these keys; also the event
    a stream ends with when its solve fails."""

    error: ErrorDetail
