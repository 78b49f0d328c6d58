"""Streaming one step from an OpenAI-compatible server: the request, the stream closed at the separator,
the optional features a server refuses (dropped and asked again), and the :class:`StepOutput` with its
costs (see "How a step ends" and "Costs" in :mod:`arbitrage.backends.openai_http`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from arbitrage.backends.base import FinishReason, StepOutput, StepParams
from arbitrage.backends.http_retry import IncompleteResponse, status_code
from arbitrage.backends.openai_spec import OpenAISpec
from arbitrage.backends.stepping import find_step_end
from arbitrage.errors import BackendError

logger = logging.getLogger(__name__)

_FEATURE_WORDS = {"logprobs": ("logprob", "logits_all"), "usage": ("stream_options", "continuous_usage")}


@dataclass(slots=True)
class StreamedStep:
    """What one streamed completion produced."""

    text: str = ""
    finish: FinishReason = FinishReason.LENGTH
    server_finish: str | None = None
    tokens: list[tuple[str, float]] = field(default_factory=list)  # (token text, logprob)
    chunks: int = 0
    usage: Any = None
    first_token_at: float | None = None
    prefix: str = ""  # text already kept before the streamed text (prefix keeping); ends no step


class StepStreaming:
    """The streaming half of :class:`~arbitrage.backends.openai_http.OpenAIGenerator` (a mixin: the
    generator sets the attributes below)."""

    spec: OpenAISpec
    base_url: str
    model: str  # the served model's name
    name: str  # the name shown in traces
    _client: Any  # openai.OpenAI
    _features: dict[str, bool]  # optional request features still asked for: logprobs, usage

    def _stream_with_fallbacks(self, prompt: str, params: StepParams, prefix: str = "") -> StreamedStep:
        """One attempt; drop an optional feature the server rejects (logprobs, usage) and ask again."""
        while True:
            try:
                return self._stream(prompt, params, prefix)
            except Exception as exc:
                feature = self._rejected_feature(exc)
                if feature is None:
                    raise
                logger.warning("%s rejects %s (%s); asking without", self.base_url, feature, exc)
                self._features[feature] = False

    def _rejected_feature(self, exc: BaseException) -> str | None:
        code = status_code(exc)
        if code is None or code in (401, 403, 404, 429):
            return None
        message = str(getattr(exc, "message", "") or exc).lower() + str(getattr(exc, "body", "")).lower()
        for feature, words in _FEATURE_WORDS.items():
            optional = feature != "logprobs" or self.spec.logprobs == "auto"
            if self._features[feature] and optional and any(w in message for w in words):
                return feature
        return None

    def _request(self, prompt: str, params: StepParams) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": params.max_step_tokens,
            "temperature": params.temperature,
            "stream": True,
        }
        if params.temperature > 0:
            request["top_p"] = params.top_p  # always: some servers default to less than 1
        if params.seed is not None:
            request["seed"] = params.seed
        if self._features["logprobs"]:
            request["logprobs"] = 1
        if self._features["usage"]:
            request["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        if self.spec.extra_body:
            request["extra_body"] = dict(self.spec.extra_body)
        return request

    def _stream(self, prompt: str, params: StepParams, prefix: str = "") -> StreamedStep:
        """Stream one completion, closing it as soon as the separator shows up (in ``prefix`` + text)."""
        out = StreamedStep(prefix=prefix)
        stream = self._client.completions.create(**self._request(prompt, params))
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    out.usage = chunk.usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.text:
                    out.chunks += 1
                    if out.first_token_at is None:
                        out.first_token_at = time.perf_counter()
                    out.text += choice.text
                logprobs = choice.logprobs
                if logprobs is not None and logprobs.tokens:
                    values = logprobs.token_logprobs or []
                    for i, token in enumerate(logprobs.tokens):
                        value = values[i] if i < len(values) else None
                        out.tokens.append((token, float(value) if value is not None else 0.0))
                if find_step_end(out.prefix + out.text, params.separator) is not None:
                    out.finish = FinishReason.STEP
                    return out
                if choice.finish_reason is not None:
                    out.server_finish = choice.finish_reason
            if out.server_finish == "stop":
                out.finish = FinishReason.EOS
            elif out.server_finish == "length":
                out.finish = FinishReason.LENGTH
            elif out.server_finish is None:
                hint = (
                    "; a plain llama_cpp.server does this when another request arrives: start it with "
                    "--interrupt_requests false"
                )
                if not out.text and self._features["logprobs"]:
                    hint = "; if the server cannot return logprobs, add ?logprobs=off to the spec"
                raise IncompleteResponse(f"the stream ended without a finish reason{hint}")
            else:
                raise BackendError(
                    f"{self.name} ({self.base_url}) ended a step with finish_reason {out.server_finish!r}"
                )
            return out
        finally:
            stream.close()  # at a separator: disconnecting makes the server abort the request

    def _output(
        self,
        result: StreamedStep,
        params: StepParams,
        t0: float,
        first: float,
        end: float,
        attempts: int,
        retry_seconds: float,
        kept: list[tuple[str, float]] | None = None,
    ) -> StepOutput:
        kept = kept or []  # (text, logprob) of kept tokens before the streamed ones (prefix keeping)
        text = result.prefix + result.text
        tokens = [*kept, *result.tokens] if result.tokens else []
        if result.finish == FinishReason.STEP:
            cut = find_step_end(text, params.separator)
            assert cut is not None
            tokens = _tokens_through(tokens, cut + len(params.separator), text)
            text = text[:cut]
        usage = result.usage
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) if details is not None else None
        completion = getattr(usage, "completion_tokens", None)
        if completion and result.finish != FinishReason.STEP:
            count = int(completion) + len(kept)  # the server's own count, end-of-sequence token included
        else:
            count = len(tokens) if tokens else result.chunks + len(kept)
            if result.finish == FinishReason.EOS:
                count += 1  # the end-of-sequence token, which streams carry no text or logprob for
        extra: dict[str, object] = {
            "server": self.base_url,
            "server_finish_reason": result.server_finish,
            "cached_tokens": cached,
            "attempts": attempts,
            "retry_seconds": retry_seconds,
        }
        if result.prefix:
            extra["kept_tokens"] = len(kept)
        return StepOutput(
            text=text.strip(),
            finish_reason=result.finish,
            model=self.name,
            tokens=count,
            token_logprobs=tuple(lp for _, lp in tokens),
            prompt_tokens=prompt_tokens,
            prefill_tokens=max(0, prompt_tokens - int(cached or 0)),
            prefill_seconds=first - t0,
            decode_seconds=end - first,
            extra=extra,
        )


def _tokens_through(tokens: list[tuple[str, float]], end: int, text: str) -> list[tuple[str, float]]:
    """The streamed tokens that cover ``text[:end]`` (the step and its separator), when they line up."""
    if not tokens or "".join(t for t, _ in tokens) != text:
        return tokens
    kept: list[tuple[str, float]] = []
    position = 0
    for token in tokens:
        if position >= end:
            break
        kept.append(token)
        position += len(token[0])
    return kept
