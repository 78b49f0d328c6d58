"""Generator backend for OpenAI-compatible servers: vLLM, SGLang, llama.cpp's servers, and others.

Spec: ``openai:BASE_URL#MODEL?option=value&...``, e.g. ``openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-1.5B``.
``BASE_URL`` is the API root (with ``/v1``); ``MODEL`` may be left out (``openai:URL`` or
``openai:URL#?options``) when the server serves exactly one model. Options (all optional):

- ``template``: chat template rendered client-side (``chatml`` default, ``gemma``, ``plain``, or a path to
  a ``.jinja`` file or a ``tokenizer_config.json``; see ``backends/templates.py``).
- ``timeout`` (read timeout, s, default 120), ``connect_timeout`` (s, default 5).
- ``retries`` (default 3), ``backoff`` (s, default 0.5), ``max_backoff`` (s, default 8): see
  ``backends/http_retry.py``.
- ``logprobs``: ``auto`` (default: ask, and stop asking if the server refuses), ``on``, ``off``.
- ``api_key_env``: environment variable holding this server's key (default: ``ARBITRAGE_OPENAI_API_KEY``,
  then ``OPENAI_API_KEY``; see ``settings.py``).
- ``check``: ``true`` (default) checks at load time that the server answers and serves ``MODEL`` and,
  with ``logprobs=auto``, whether it returns logprobs (one 1-token completion).
- ``name``: the name shown in traces (default: ``MODEL``).
- ``x_FIELD=VALUE``: sent as request field ``FIELD`` (JSON value), for engine-specific sampling knobs:
  ``x_repetition_penalty=1.05`` on vLLM/SGLang, ``x_repeat_penalty=1.0`` on a plain
  ``python -m llama_cpp.server``, whose defaults (``repeat_penalty`` 1.1, ``top_k`` 40, ``min_p`` 0.05)
  otherwise change the model's steps; ``python -m arbitrage.backends.llamacpp_server`` serves neutral
  defaults instead. Nothing engine-specific is sent unless asked for.

Why the completions endpoint with a client-rendered prompt: a step continues the *assistant's* text, and
only the raw-prompt endpoint does that on every server. Chat completions can continue a final assistant
message only on vLLM and SGLang (``continue_final_message``), and Hugging Face's implementation of it
strips the message's trailing whitespace, dropping the separator the next step must follow; llama.cpp's
Python server ignores the flag and silently opens a new turn. So the user picks the template (it must
match the served model; ``chatml`` fits Qwen and SmolLM2) and the server sees plain text.

How a step ends, without any engine's private fields: the completion is *streamed* with no server-side
stop string, and the client finds the separator in the streamed text with ``find_step_end``, the same
rule as the local backends (a blank line before any content does not end the step; a token straddling
the separator is handled). When it appears the stream is closed, and vLLM, SGLang and llama.cpp's
servers all abort a request whose client disconnected. A stream that ends by itself with
``finish_reason == "stop"`` and no separator in its text ended at the end of sequence (EOS);
``"length"`` is the token cap. (With the separator as a server-side ``stop`` string, the separator and
EOS both come back as ``"stop"`` with the same text; only engine-specific fields such as SGLang's
``matched_stop``, vLLM's ``stop_reason`` or llama.cpp's ``stopping_word`` tell them apart.)

Costs in :class:`StepOutput`: ``prefill_seconds`` is the time to the first streamed token (queueing,
network and prefill together), ``decode_seconds`` the rest. ``tokens`` is the server's
``completion_tokens`` when a stream ends by itself with usage, else the streamed logprob entries, else
the streamed chunks (one per token on vLLM and llama.cpp), plus one for an end-of-sequence token, as
the local backends count it. ``prompt_tokens`` and ``prefill_tokens`` come from the server's
usage report (``prefill = prompt - prompt_tokens_details.cached_tokens``, which vLLM reports with prefix
caching); a stream closed at a separator carries usage only on servers that send it in every chunk
(vLLM's ``continuous_usage_stats``, requested when accepted), so elsewhere both stay 0 = unknown.
``token_entropies`` stays empty: servers return top-k logprobs, not the full distribution.

Verification (the ``Verifier`` role, ``verify_step``/``continue_step``) reads *prompt* logprobs: vLLM's
``prompt_logprobs`` request field first, else ``echo=true`` with ``logprobs=1`` (OpenAI's legacy API,
vLLM, llama-cpp-python started with ``--logits_all true``), in one-token completions of the context and
of the context with the step (the first gives the context's own tokenisation for the common-prefix
rule; see ``backends/prompt_logprobs.py``). A server without prompt logprobs (llama.cpp's C++ server,
llama-cpp-python without ``logits_all``) gets a one-line ``BackendError``. ``continue_step`` streams a
completion of the context and the kept prefix of the verified text, joined to it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams, Verification
from arbitrage.backends.http_retry import call_with_retries, describe_error, status_code
from arbitrage.backends.openai_spec import OPTION_NAMES, OpenAISpec, resolve_api_key
from arbitrage.backends.openai_stream import StepStreaming, StreamedStep
from arbitrage.backends.openai_verify import PromptViews
from arbitrage.backends.prompt_logprobs import END_TOKEN, PromptView, span_tokens, verified_start
from arbitrage.backends.templates import PromptTemplate
from arbitrage.errors import BackendError, ConfigError
from arbitrage.prompts import PromptStyle, solution_text
from arbitrage.settings import Settings, load_settings

__all__ = ["OPTION_NAMES", "OpenAIGenerator", "OpenAISpec", "load_openai", "resolve_api_key"]

logger = logging.getLogger(__name__)


class OpenAIGenerator(StepStreaming, PromptViews):
    """A model behind an OpenAI-compatible server, writing one step per streamed completion request.

    Thread-safe: concurrent problems may share one instance (one HTTP connection pool).
    """

    def __init__(
        self,
        spec: OpenAISpec,
        *,
        prompt_style: PromptStyle | None = None,
        settings: Settings | None = None,
    ) -> None:
        import openai

        self.spec = spec
        self.base_url = spec.base_url
        self.prompt_style = prompt_style or PromptStyle()
        self.template = PromptTemplate.load(spec.template)
        settings = settings or load_settings()
        self._client = openai.OpenAI(
            base_url=spec.base_url,
            api_key=resolve_api_key(spec, settings),
            timeout=openai.Timeout(spec.timeout, connect=spec.connect_timeout),
            max_retries=0,  # retries are ours: they also cover streams that break off midway
        )
        self._features = {"logprobs": spec.logprobs != "off", "usage": True}
        self.model = spec.model or ""
        if spec.check or spec.model is None:
            self.model = self._check_model()
        if spec.check and spec.logprobs == "auto":
            self._probe_logprobs()
        self.name = spec.name or self.model
        self._verify_mode: str | None = None  # prompt_logprobs | echo, once a verification found out
        self._closed = False

    # -- server checks -------------------------------------------------------------------------------

    def _fail(self, action: str, exc: BaseException) -> BackendError:
        import openai

        attempts = getattr(exc, "attempts", 1)
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        reason = describe_error(exc)
        hint = ""
        if isinstance(exc, openai.APIConnectionError) or "refused" in reason:
            hint = "; is the server running and the URL right?"
        elif status_code(exc) in (401, 403):
            hint = "; set ARBITRAGE_OPENAI_API_KEY (or OPENAI_API_KEY, or the spec's api_key_env)"
        elif status_code(exc) == 404:
            hint = f"; check the model name {self.model!r} and that the URL ends with the API root (/v1)"
        return BackendError(
            f"OpenAI-compatible server {self.base_url}: {action} failed{tried}: {reason}{hint}"
        )

    def served_models(self) -> list[str] | None:
        """Model names the server lists at ``/models`` (None when it has no such endpoint)."""
        try:
            page, _ = call_with_retries(
                self._client.models.list, self.spec.retry, what=f"{self.base_url}/models"
            )
        except Exception as exc:
            if status_code(exc) in (404, 405):
                return None
            raise self._fail("listing models", exc) from exc
        return [m.id for m in page.data]

    def _check_model(self) -> str:
        served = self.served_models()
        wanted = self.spec.model
        if served is None:
            if wanted is None:
                raise ConfigError(
                    f"{self.base_url} does not list its models; name one: openai:{self.base_url}#MODEL"
                )
            logger.info("%s has no /models endpoint; not checking %r", self.base_url, wanted)
            return wanted
        if wanted is None:
            if len(served) != 1:
                raise ConfigError(
                    f"{self.base_url} serves {len(served)} models ({', '.join(served) or 'none'}); "
                    f"pick one: openai:{self.base_url}#MODEL"
                )
            return served[0]
        if wanted not in served:
            raise BackendError(
                f"OpenAI-compatible server {self.base_url} does not serve model {wanted!r}; "
                f"it serves: {', '.join(served) or 'nothing'}"
            )
        return wanted

    def _probe_logprobs(self) -> None:
        """Ask for one token with logprobs, not streamed, so a refusal comes back as a readable error.

        (llama-cpp-python's server started without ``logits_all`` fails a *streamed* logprobs request
        only after sending its headers: the stream just ends empty.)
        """

        def probe() -> BaseException | None:
            try:
                self._client.completions.create(
                    model=self.model, prompt="Hello", max_tokens=1, temperature=0.0, logprobs=1,
                    extra_body=dict(self.spec.extra_body) or None,
                )  # fmt: skip
            except Exception as exc:
                if self._rejected_feature(exc) == "logprobs":
                    return exc  # a refusal, not a failure: no retries
                raise
            return None

        try:
            refusal, _ = call_with_retries(probe, self.spec.retry, what=f"{self.base_url}/completions")
        except Exception as exc:
            raise self._fail(f"a test completion with {self.model!r}", exc) from exc
        if refusal is not None:
            logger.info("%s returns no logprobs (%s); asking without", self.base_url, refusal)
            self._features["logprobs"] = False

    # -- prompt --------------------------------------------------------------------------------------

    def render_prompt(self, context: StepContext, separator: str) -> str:
        """The raw prompt: the chat-formatted question, then the shared solution text."""
        return self.template.render(self.prompt_style, context.question) + solution_text(
            context.steps, separator
        )

    # -- generation ----------------------------------------------------------------------------------

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        return self._decode(self.render_prompt(context, params.separator), params, params)

    def _decode(
        self,
        prompt: str,
        params: StepParams,
        budget: StepParams,
        kept_tokens: list[tuple[str, float]] | None = None,
        prefix: str = "",
    ) -> StepOutput:
        """Stream one step after ``prompt`` (retried, see ``spec.retry``) and time it: ``budget`` is what
        the server is asked for, ``params`` the step's own (they differ by the ``kept_tokens``, which
        ``prefix`` spells, of a continued step)."""
        started = time.perf_counter()
        attempt_start = [started]

        def attempt() -> StreamedStep:
            attempt_start[0] = time.perf_counter()
            return self._stream_with_fallbacks(prompt, budget, prefix=prefix)

        try:
            result, attempts = call_with_retries(attempt, self.spec.retry, what=f"{self.name} step")
        except BackendError:
            raise
        except Exception as exc:
            raise self._fail(f"step of {self.name}", exc) from exc
        end = time.perf_counter()
        t0 = attempt_start[0]
        first = result.first_token_at if result.first_token_at is not None else end
        return self._output(result, params, t0, first, end, attempts, t0 - started, kept_tokens)

    # -- verification (the Verifier role), through prompt logprobs -------------------------------------

    def verify_step(self, context: StepContext, step: StepOutput, params: StepParams) -> Verification:
        """The model's view of ``step`` after ``context``, from prompt logprobs: two one-token
        completions, of the context (for its own tokenisation) and of the context with the step.

        The verified tokens are those of the second prompt past the tokens it shares with the first (the
        local backends' common-prefix rule). ``tokens`` are the server's token ids (vLLM's
        ``prompt_logprobs``) or stable hashes of the token texts (echo); ``entropies`` are NaN (servers
        return top-k logprobs, not the distribution), as is the logprob of an end token the server sends
        no entry for. The server's prefix cache keeps the evaluated text for the next request.
        """
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        question = self.template.render(self.prompt_style, context.question)
        context_text = self.render_prompt(context, params.separator)
        text = question + solution_text((*context.steps, step.text), params.separator)
        if step.finish_reason != FinishReason.STEP:
            text = text[: len(text) - len(params.separator)]  # no separator after an ended or capped step
        started = time.perf_counter()

        def views() -> tuple[PromptView, PromptView]:
            return self._prompt_view(context_text, len(question)), self._prompt_view(text, len(question))

        try:
            (own, full), attempts = call_with_retries(
                views, self.spec.retry, what=f"{self.name} verification"
            )
        except BackendError:
            raise
        except Exception as exc:
            raise self._fail(f"verification with {self.name}", exc) from exc
        seconds = time.perf_counter() - started
        start = verified_start(own.tokens, full.tokens, len(context_text))
        span = span_tokens(full.rows, start)
        n = len(span)
        end_is_eos = full.finish == "stop" and not "".join(row.text for row in full.generated)
        generated = full.generated
        if generated and not end_is_eos:
            after, after_logprob = generated[0].token, generated[0].logprob
        else:
            after, after_logprob = END_TOKEN, generated[0].logprob if generated else math.nan
        prefill = sum(max(0, view.prompt_tokens - view.cached_tokens) for view in (own, full))
        return Verification(
            model=self.name,
            text=step.text,
            finish_reason=step.finish_reason,
            tokens=tuple(row.token for row in span),
            token_logprobs=tuple(row.logprob for row in span),
            greedy_tokens=(*(row.greedy for row in span), after),
            greedy_logprobs=(*(row.greedy_logprob for row in span), after_logprob),
            entropies=(math.nan,) * (n + 1),
            end_is_eos=end_is_eos,
            prompt_tokens=max(0, (full.prompt_tokens or len(full.tokens)) - n),  # before the verified
            prefill_tokens=prefill,  # both requests' uncached prompt tokens (usage without cache: all)
            seconds=seconds,
            extra={
                "server": self.base_url,
                "prompt_logprobs": self._verify_mode,
                "attempts": attempts,
                "context_chars": len(context_text),  # the context's length (the prompt continue_step sends)
                "span_start": start,  # where the verified text starts in the prompt (<= context_chars)
                "span_text": text[
                    start:
                ],  # the verified text (any re-tokenised context end, step, separator)
                "offsets": tuple(max(0, row.start - start) for row in span),  # [n] in span_text
            },
        )

    def continue_step(
        self, context: StepContext, params: StepParams, verification: Verification
    ) -> StepOutput:
        """This model's step after ``context``: one completion of the prompt, the solution and the kept
        prefix of the verified text (the server's prefix cache makes that prefix cheap), joined to it."""
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        prompt = self.render_prompt(context, params.separator)
        extra = verification.extra
        usable = verification.model == self.name and extra.get("context_chars") == len(prompt)
        divergence = verification.first_divergence
        n = verification.n
        if not usable or divergence == 0:
            step = self.generate_step(context, params)
            return dataclasses.replace(step, extra={**step.extra, "kept_tokens": 0})
        span_text = str(extra["span_text"])
        offsets = [int(o) for o in extra["offsets"]]  # type: ignore[attr-defined]
        eos = verification.finish_reason == FinishReason.EOS
        if divergence is None and n + eos <= params.max_step_tokens:  # the model's own step: no decoding
            return StepOutput(
                text=verification.text,
                finish_reason=verification.finish_reason,
                model=self.name,
                tokens=n + (1 if eos else 0),
                token_logprobs=verification.token_logprobs,
                prompt_tokens=verification.prompt_tokens,
                extra={"server": self.base_url, "kept_tokens": n},
            )
        kept = min(n if divergence is None else divergence, params.max_step_tokens)
        lead = len(prompt) - int(str(extra.get("span_start", len(prompt))))  # context chars in the span
        bounds = [*offsets[:kept], offsets[kept] if kept < n else len(span_text)]
        if bounds[kept] <= lead:  # only the re-tokenised end of the context was kept: decode it all
            step = self.generate_step(context, params)
            return dataclasses.replace(step, extra={**step.extra, "kept_tokens": 0})
        kept_tokens = [  # (text in the step, logprob); a token of the context's end has no step text
            (span_text[max(bounds[i], lead) : max(bounds[i + 1], lead)], verification.token_logprobs[i])
            for i in range(kept)
        ]
        kept_text = span_text[lead : bounds[kept]]
        if kept >= params.max_step_tokens:  # the kept tokens fill the step's budget
            return StepOutput(
                text=kept_text.strip(),
                finish_reason=FinishReason.LENGTH,
                model=self.name,
                tokens=kept,
                token_logprobs=tuple(lp for _, lp in kept_tokens),
                prompt_tokens=verification.prompt_tokens,
                extra={"server": self.base_url, "kept_tokens": kept},
            )
        rest = dataclasses.replace(params, max_step_tokens=params.max_step_tokens - kept)
        return self._decode(prompt + kept_text, params, rest, kept_tokens, prefix=kept_text)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def __repr__(self) -> str:
        return f"OpenAIGenerator({self.name!r}, base_url={self.base_url!r}, template={self.template.name!r})"


def load_openai(rest: str, prompt_style: PromptStyle, settings: Settings | None) -> OpenAIGenerator:
    """Build the generator of an ``openai:`` spec (registered in ``backends/loader.py``)."""
    return OpenAIGenerator(OpenAISpec.parse(rest), prompt_style=prompt_style, settings=settings)
