"""What an OpenAI-compatible server says about a prompt's own tokens: prompt logprobs through vLLM's
``prompt_logprobs`` field, else ``echo=true`` with ``logprobs``, read into a
:class:`~arbitrage.backends.prompt_logprobs.PromptView` (see "Verification" in
:mod:`arbitrage.backends.openai_http`)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from arbitrage.backends.http_retry import describe_error, status_code
from arbitrage.backends.openai_spec import OpenAISpec
from arbitrage.backends.prompt_logprobs import (
    PromptToken,
    PromptTokens,
    PromptView,
    from_echo,
    from_prompt_logprobs,
    lines_up,
)
from arbitrage.errors import BackendError

logger = logging.getLogger(__name__)


class PromptViews:
    """The prompt-logprob reading of :class:`~arbitrage.backends.openai_http.OpenAIGenerator` (a mixin:
    the generator sets the attributes below)."""

    spec: OpenAISpec
    base_url: str
    model: str  # the served model's name
    name: str  # the name shown in traces
    _client: Any  # openai.OpenAI
    _verify_mode: str | None  # prompt_logprobs | echo, once a verification found out

    def _no_prompt_logprobs(self, why: str) -> BackendError:
        return BackendError(
            f"{self.name} ({self.base_url}) cannot verify steps: {why}; verification needs prompt "
            "logprobs (vLLM's prompt_logprobs, or echo=true with logprobs on /completions; "
            "llama-cpp-python: start the server with --logits_all true)"
        )

    def _prompt_view(self, text: str, start: int) -> PromptView:
        """The model's view of every token of ``text`` and of one greedy token after it. The server's
        tokens must spell out ``text[start:]`` exactly, else it gets a clear error."""
        request: dict[str, Any] = {
            "model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "logprobs": 1,
        }  # fmt: skip
        if self._verify_mode in (None, "prompt_logprobs"):
            try:
                # return_token_ids: vLLM then names the prompt's and the generated token's ids, so the
                # greedy token after the step is an id like the prompt's (not a hash of its text)
                extra = {**self.spec.extra_body, "prompt_logprobs": 1, "return_token_ids": True}
                response = self._client.completions.create(**request, extra_body=extra)
            except Exception as exc:
                if not _refuses(exc, (400, 422), ("logprob",)):
                    raise
                logger.info("%s rejects prompt_logprobs (%s); trying echo", self.base_url, exc)
            else:
                choice = response.choices[0]
                entries = getattr(choice, "prompt_logprobs", None)
                if entries:
                    self._verify_mode = "prompt_logprobs"
                    prompt_ids = getattr(choice, "prompt_token_ids", None)
                    tokens, rows = from_prompt_logprobs(entries, prompt_ids, len(text))
                    if not "".join(row.text for row in rows).endswith(text[start:]):
                        raise self._no_prompt_logprobs(
                            "its prompt_logprobs tokens do not spell out the prompt's end"
                        )
                    generated = []
                    if choice.logprobs is not None:
                        generated = from_echo(choice.logprobs, choice.text or "", 0)[2]
                    ids = getattr(choice, "token_ids", None)
                    if generated and ids:
                        generated[0] = dataclasses.replace(generated[0], token=int(ids[0]))
                    return self._view(tokens, rows, generated, choice.finish_reason, response.usage)
            self._verify_mode = "echo"
        try:
            response = self._client.completions.create(
                **request, echo=True, extra_body=dict(self.spec.extra_body) or None
            )
        except Exception as exc:
            if _refuses(exc, (), ("logprob", "echo")):
                raise self._no_prompt_logprobs(
                    f"it refused echo with logprobs ({describe_error(exc)})"
                ) from exc
            raise
        choice = response.choices[0]
        echoed = choice.text or ""
        if not echoed.startswith(text):
            raise self._no_prompt_logprobs("it does not echo the prompt (echo=true)")
        if choice.logprobs is None:
            raise self._no_prompt_logprobs("it returned no logprobs for an echoed prompt")
        returned = "".join(str(token) for token in getattr(choice.logprobs, "tokens", None) or [])
        if len(returned) <= len(echoed) - len(text):
            raise self._no_prompt_logprobs(
                "it returned logprobs for the generated token only, not the prompt"
            )
        if not lines_up(choice.logprobs, echoed, start):
            raise self._no_prompt_logprobs(
                "its echoed logprobs do not line up with the prompt (llama-cpp-python shifts them "
                "by one token unless the prompt starts with the model's BOS token)"
            )
        tokens, rows, generated = from_echo(choice.logprobs, echoed, len(text))
        return self._view(tokens, rows, generated, choice.finish_reason, response.usage)

    @staticmethod
    def _view(
        tokens: PromptTokens,
        rows: list[PromptToken],
        generated: list[PromptToken],
        finish: str | None,
        usage: Any,
    ) -> PromptView:
        details = getattr(usage, "prompt_tokens_details", None)
        return PromptView(
            tokens=tokens,
            rows=rows,
            generated=generated,
            finish=finish,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            cached_tokens=int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0,
        )


def _refuses(exc: BaseException, codes: tuple[int, ...], words: tuple[str, ...]) -> bool:
    """Whether ``exc`` is the server refusing a request feature: an HTTP status in ``codes``, or a 400,
    422 or 500 whose message names one of ``words`` (llama-cpp-python refuses logprobs with a 500)."""
    code = status_code(exc)
    if code in codes:
        return True
    message = str(getattr(exc, "message", "") or exc).lower() + str(getattr(exc, "body", "")).lower()
    return code in (400, 422, 500) and any(word in message for word in words)
