"""Generator backend on llama.cpp (llama-cpp-python), the embedded default.

One :class:`LlamaCppGenerator` owns one ``Llama`` object and therefore one KV cache: keep one per role
(draft, target, judge), since an unrelated prompt evicts the cached prefix.

Per step call:
1. Render the question with the model's chat template (GGUF metadata, or an explicit fallback format;
   ``backends/llamacpp_prompt.py``) and append the shared solution text; tokenise prompt and solution
   separately (stable prefixes).
2. Find the longest prefix shared with the tokens already in the KV cache that is *canonical* (its
   numbers equal a fresh evaluation's: ``backends/llamacpp_eval.py``); evaluate only the rest
   (``prefill_tokens``). At least one token is always evaluated to refresh the logits.
3. Decode token by token: read the last position's logits (no ``logits_all``), log-softmax them in numpy
   for the chosen token's logprob and the entropy, pick greedily or sample, stop on an end-of-generation
   token, on the separator appearing in the decoded text (also when one token straddles it), or on the
   per-step token cap. Each chosen token is fed back to the cache by ``backends/llamacpp_feed.py``
   (with token-level speculation for greedy steps when a proposer is attached).

Verification (:meth:`LlamaCppGenerator.verify_step`) evaluates another model's step in one batch that
asks llama.cpp for the logits of the step's positions only; :meth:`~LlamaCppGenerator.continue_step`
keeps the verified tokens up to the first one the model would not have chosen and decodes from there.
A replayed step (:meth:`~LlamaCppGenerator.replay_step`, used by the step cache) prefills the context
for real, measuring what a live call would have prefilled, and leaves the step's tokens in the cache as
live decoding would.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams, Verification
from arbitrage.backends.llamacpp_eval import KVEvaluator, probe_batch_invariance
from arbitrage.backends.llamacpp_feed import SpeculativeFeed
from arbitrage.backends.llamacpp_probe import extra_bufts_allowed
from arbitrage.backends.llamacpp_prompt import ChatPrompts
from arbitrage.backends.speculation import Speculation
from arbitrage.backends.stepping import decode_step, log_softmax, pick_token, row_summaries
from arbitrage.errors import BackendError, ConfigError, ModelFileError
from arbitrage.models.store import check_gguf_file
from arbitrage.prompts import FALLBACK_FORMATS, PromptStyle, solution_text
from arbitrage.settings import Settings, load_settings

logger = logging.getLogger(__name__)

# Guards the brief swap of llama_model_default_params while a model loads (see _model_params).
_LOAD_LOCK = threading.Lock()
ALIGNED_CHUNK = 32  # chunk of the "aligned" determinism mode (divides n_batch)
_PROBE_TEXT = (  # ~100 tokens: long enough for attention over the cached positions to matter
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?\n\nIn April she sold 48 clips. In May "
    "she sold half as many, so 48 / 2 = 24 clips.\n\nAltogether she sold 48 + 24 = 72 clips, so the "
    "answer is \\boxed{72}."
)


@contextlib.contextmanager
def _model_params(**overrides: Any) -> Iterator[None]:
    """Make ``Llama(...)`` load with extra model parameters that its constructor does not expose.

    ``Llama.__init__`` builds its ``llama_model_params`` from ``llama_model_default_params()`` and
    loads the model in the same call; wrapping that function for the duration of the load is the only
    way to set ``use_extra_bufts`` without reimplementing the constructor.
    """
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def patched() -> Any:
        params = original()
        for key, value in overrides.items():
            setattr(params, key, value)
        return params

    with _LOAD_LOCK:
        lib.llama_model_default_params = patched
        try:
            yield
        finally:
            lib.llama_model_default_params = original


class LlamaCppGenerator:
    """A GGUF model through llama.cpp, writing one step per call with KV-cache reuse."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        chat_format: str | None = None,
        prompt_style: PromptStyle | None = None,
        extra_bufts: bool | None = None,
        seed: int = 0,
        settings: Settings | None = None,
        determinism: str | None = None,
        verify: str | None = None,
    ) -> None:
        from llama_cpp import Llama

        if n_ctx <= 0:
            raise ConfigError(f"n_ctx must be positive, got {n_ctx}")
        path = Path(model_path)
        check_gguf_file(path)
        settings = settings or load_settings()
        self.name = name or path.stem
        self.path = path
        style = prompt_style or PromptStyle()
        if chat_format is not None and chat_format not in FALLBACK_FORMATS:
            known = ", ".join(FALLBACK_FORMATS)
            raise ConfigError(
                f"Unknown chat format {chat_format!r} (known: {known}, or None for the GGUF's own)"
            )
        self.extra_bufts = extra_bufts_allowed(path, settings) if extra_bufts is None else extra_bufts
        threads = n_threads or settings.threads
        try:
            with _model_params(use_extra_bufts=self.extra_bufts):
                self.llm = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_batch=512,
                    n_threads=threads,
                    n_threads_batch=threads,
                    logits_all=False,
                    flash_attn=settings.llama_flash_attn == "on",
                    seed=seed,
                    verbose=False,
                )
        except ValueError as exc:
            raise ModelFileError(
                f"llama.cpp could not load {path}: {exc} (corrupt or unsupported GGUF?)"
            ) from exc
        if bool(self.llm.model_params.use_extra_bufts) != self.extra_bufts:
            raise BackendError(
                "Could not set llama.cpp use_extra_bufts; this llama-cpp-python is incompatible"
            )
        self.n_ctx = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        import llama_cpp

        self._lib = llama_cpp
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()  # one KV cache: calls on this model are serialised
        self.prompts = ChatPrompts(self.llm, self.name, style, chat_format)
        self._closed = False
        self.determinism = self._pick_determinism(determinism or settings.llama_determinism)
        self.verify = verify or settings.llama_verify  # see ARBITRAGE_LLAMA_VERIFY
        if self.verify not in ("batched", "sequential"):
            raise ConfigError(f"verify must be batched or sequential, got {self.verify!r}")
        self._logits = np.zeros(self.n_vocab, dtype=np.float32)  # next-token logits after the cache
        self._feeder = SpeculativeFeed(self._kv, self.n_ctx)  # token-level speculation (speculate_with)

    def _pick_determinism(self, mode: str) -> str:
        """Resolve ``auto`` by probing the build (see ``backends/llamacpp_eval.py``); set up evaluation."""
        if mode not in ("auto", "exact", "aligned", "off"):
            raise ConfigError(f"determinism must be auto, exact, aligned or off, got {mode!r}")
        if mode == "auto":
            probe = KVEvaluator(self.llm, None)
            try:
                invariant = probe_batch_invariance(probe, self.tokenize(_PROBE_TEXT))
            finally:
                probe.close()
            mode = "exact" if invariant else "aligned"
            logger.info("%s: llama.cpp evaluation is %s", self.name, "batch-invariant" if invariant else
                        f"batch-dependent; using aligned {ALIGNED_CHUNK}-token chunks")  # fmt: skip
        self._kv = KVEvaluator(self.llm, ALIGNED_CHUNK if mode == "aligned" else None)
        return mode

    # -- prompt construction -------------------------------------------------------------------------

    def render_prompt(self, question: str) -> str:
        """The model's own chat-formatted prompt for ``question``, ending where the answer begins."""
        return self.prompts.render(question)

    def _prompt_tokens(self, question: str) -> list[int]:
        return self.prompts.tokens(question)

    def context_tokens(self, context: StepContext, separator: str) -> list[int]:
        """Token ids of the full context: chat prompt, then the shared solution text."""
        tokens = list(self._prompt_tokens(context.question))
        text = solution_text(context.steps, separator)
        if text:
            tokens += self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return tokens

    # -- evaluation ----------------------------------------------------------------------------------

    def _feed(self, token: int) -> None:
        """Decode mode: evaluate one generated token; its logits become the next-token logits (with
        token-level speculation for greedy calls, see ``backends/llamacpp_feed.py``)."""
        self._logits = self._feeder.feed(token)

    def _prefill(self, tokens: list[int]) -> int:
        """Bring the KV cache to ``tokens`` (canonically, reusing what it can); return tokens evaluated.

        Leaves the next-token logits after ``tokens`` in ``self._logits``.
        """
        if len(tokens) >= self.n_ctx:
            raise BackendError(
                f"{self.name}: context of {len(tokens)} tokens does not fit n_ctx={self.n_ctx}; "
                "raise --n-ctx or lower --max-steps/--max-tokens"
            )
        start = self._kv.reusable(tokens)
        self._logits = self._kv.evaluate(tokens, start, [len(tokens) - 1])[0]
        return len(tokens) - start

    # -- token-level speculation ---------------------------------------------------------------------

    def vocabulary_key(self) -> str:
        """A fingerprint of the vocabulary: equal for models that give equal text equal token ids."""
        import hashlib

        probe = self.tokenize(_PROBE_TEXT[:160] + " 12,345.6 ∑ café\n\n", special=False)
        ends = [int(self.llm.token_eos()), int(self.llm.token_bos())]
        return hashlib.sha256(repr((self.n_vocab, probe, ends)).encode()).hexdigest()[:16]

    def propose(self, tokens: list[int] | tuple[int, ...], k: int) -> list[int]:
        """Up to ``k`` greedy tokens after ``tokens`` (this model as a token proposer, KV reused)."""
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        with self._lock:
            sequence = list(tokens)
            if len(sequence) + k >= self.n_ctx:
                return []
            start = self._kv.reusable(sequence)
            logits = self._kv.evaluate(sequence, start, [len(sequence) - 1])[0]
            out: list[int] = []
            while True:
                token = int(np.argmax(logits))
                out.append(token)
                if len(out) >= k or self.is_end_of_generation(token):
                    return out
                logits = self._kv.feed(token)

    def render(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens`` with special tokens written out and a leading BOS left out (what a
        text-level proposer with another vocabulary reads; see ``backends/text_speculation.py``)."""
        ids = list(tokens)
        if ids and ids[0] == self.llm.token_bos():
            ids = ids[1:]
        return self.llm.detokenize(ids, special=True).decode("utf-8", errors="ignore")

    def text_after(self, tokens: Sequence[int], new: Sequence[int]) -> str:
        """The text ``new`` adds after ``tokens``."""
        return self._decode(list(new), list(tokens))

    def tokens_after(self, tokens: Sequence[int], text: str, window: int = 8) -> list[int]:
        """This model's tokens that spell ``text`` right after ``tokens``: the text of the last
        ``window`` tokens is tokenized with and without ``text``; where the first starts with the second,
        the rest spell ``text``. [] where ``text`` would change how those tokens are spelt."""
        ids = list(tokens)
        tail = self.text_after(ids[:-window], ids[-window:]) if ids else ""
        base = self.tokenize(tail)
        full = self.tokenize(tail + text)
        return full[len(base) :] if full[: len(base)] == base else []

    def speculate_with(self, speculation: Speculation | None) -> None:
        """Decode greedy steps with token-level speculation from ``speculation``'s proposer (None: off).

        The proposer must share this model's vocabulary, and evaluation must reuse decoded positions
        (determinism ``off`` or ``exact``): the ``aligned`` mode would re-evaluate every round.
        """
        if speculation is not None:
            if self._kv.chunk is not None:
                raise ConfigError(
                    f"{self.name}: token-level speculation needs llama.cpp determinism off or exact "
                    "(the aligned reproducible mode re-evaluates decoded tokens)"
                )
            proposer = speculation.proposer
            if proposer.vocabulary_key() != self.vocabulary_key():
                raise ConfigError(
                    f"{proposer.name} cannot propose tokens for {self.name}: their vocabularies differ "
                    "(wrap it in backends.text_speculation.TextLevelProposer to speculate at the text level)"
                )
        self._feeder.speculation = speculation

    @property
    def speculation(self) -> Speculation | None:
        return self._feeder.speculation

    def _last_logits(self) -> np.ndarray:
        return self._logits

    def next_token_logprobs(self, tokens: list[int]) -> np.ndarray:
        """Log-probabilities of the token after ``tokens`` (KV reuse as for steps). For judge PRMs."""
        return self.next_token_logprobs_counted(tokens)[0]

    def next_token_logprobs_counted(self, tokens: list[int]) -> tuple[np.ndarray, int]:
        """As :meth:`next_token_logprobs`, with the number of tokens evaluated (not from the KV cache)."""
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        with self._lock:
            prefill = self._prefill(tokens)
            return log_softmax(self._last_logits()), prefill

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    @property
    def prompt_style(self) -> PromptStyle:
        """The instruction wrapped around each question (owned by the chat prompt helper)."""
        return self.prompts.prompt_style

    @prompt_style.setter
    def prompt_style(self, style: PromptStyle) -> None:
        self.prompts.set_style(style)

    def tokenize_prompt(self, prompt: str) -> list[int]:
        """Tokens of a chat-formatted prompt, special tokens parsed, BOS added as the model wants it."""
        return self.prompts.tokenize(prompt)

    def detokenize(self, tokens: list[int]) -> str:
        return self.llm.detokenize(tokens).decode("utf-8", errors="ignore")

    def is_end_of_generation(self, token: int) -> bool:
        """Whether ``token`` ends the model's turn (EOS, end-of-turn and the like)."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        with self._lock:
            return self._generate_step(context, params)

    def _generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        tokens = self.context_tokens(context, params.separator)
        rng = self._rng if params.seed is None else np.random.default_rng([params.seed, len(tokens)])
        # 1. prefill what the KV cache does not hold yet
        t0 = time.perf_counter()
        prefill = self._prefill(tokens)
        t1 = time.perf_counter()
        self._feeder.begin(params)

        # 2. decode until EOS, separator or the cap
        def next_token() -> tuple[int, float, float]:
            return pick_token(self._last_logits(), params, rng)

        step = decode_step(
            budget=min(params.max_step_tokens, self.n_ctx - len(tokens) - 1),
            separator=params.separator,
            next_token=next_token,
            is_end=self.is_end_of_generation,
            detokenize=lambda generated: self._decode(generated, tokens),
            feed=self._feed,
        )
        extra = self._feeder.end({"token_ids": list(step.token_ids)})
        t2 = time.perf_counter()
        return step.output(
            self.name,
            prompt_tokens=len(tokens),
            prefill_tokens=prefill,
            prefill_seconds=t1 - t0,
            decode_seconds=t2 - t1,
            extra=extra,
        )

    # -- verification and replay -----------------------------------------------------------------

    def _step_tokens(self, context: StepContext, text: str, finish: FinishReason, sep: str) -> list[int]:
        """Tokens of the context followed by ``text`` (and the separator, for a step that ended on it)."""
        tail = solution_text(context.steps, sep) + text + (sep if finish == FinishReason.STEP else "")
        tokens = list(self._prompt_tokens(context.question))
        return tokens + self.tokenize(tail) if tail else tokens

    def verify_step(self, context: StepContext, step: StepOutput, params: StepParams) -> Verification:
        """This model's teacher-forced view of ``step`` after ``context`` (see ``Verifier``)."""
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        with self._lock:
            t0 = time.perf_counter()
            base = self.context_tokens(context, params.separator)
            full = self._step_tokens(context, step.text, step.finish_reason, params.separator)
            if len(full) >= self.n_ctx:
                raise BackendError(
                    f"{self.name}: context of {len(full)} tokens does not fit n_ctx={self.n_ctx}"
                )
            n = min(len(base), len(full))
            mismatch = np.nonzero(np.asarray(base[:n]) != np.asarray(full[:n]))[0]
            first = int(mismatch[0]) if mismatch.size else n  # where the step's tokens begin
            first = max(first, 1)
            sequential = self._kv.chunk is not None and self.verify == "sequential"
            if not sequential:  # one batched evaluation of the step's positions (aligned chunks)
                start = min(self._kv.reusable(full), first - 1)
                if self._kv.chunk is not None:
                    start -= start % self._kv.chunk
                logits = self._kv.evaluate(full, start, list(range(first - 1, len(full))))
                prefill = len(full) - start
            else:  # batching changes the numbers: feed the step token by token as decoding does, so
                # the rows equal decoding's bit for bit and prefix keeping is exact
                prefill = self._prefill(full[:first]) + len(full) - first
                rows = [self._logits.copy()]
                rows += [self._kv.feed(token).copy() for token in full[first:]]
                logits = np.stack(rows)
            self._logits = logits[-1]
            given = full[first:]
            logprobs, greedy, greedy_logprobs, entropies = row_summaries(logits, given)
            return Verification(
                model=self.name,
                text=step.text,
                finish_reason=step.finish_reason,
                tokens=tuple(given),
                token_logprobs=tuple(logprobs),
                greedy_tokens=tuple(greedy),
                greedy_logprobs=tuple(greedy_logprobs),
                entropies=tuple(entropies),
                end_is_eos=self.is_end_of_generation(greedy[-1]),
                prompt_tokens=first,
                prefill_tokens=prefill,
                seconds=time.perf_counter() - t0,
                extra={"context_tokens": len(base), "step_start": first, "sequential": sequential},
            )

    def continue_step(
        self, context: StepContext, params: StepParams, verification: Verification
    ) -> StepOutput:
        """This model's greedy step, keeping the verified tokens it agrees with (see ``Verifier``)."""
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        with self._lock:
            tokens = self.context_tokens(context, params.separator)
            full = self._step_tokens(context, verification.text, verification.finish_reason, params.separator)
            first = len(full) - verification.n
            usable = (
                params.temperature == 0
                and verification.model == self.name
                and first == len(tokens)
                and tuple(full[first:]) == verification.tokens
            )
            if not usable:  # sampled, foreign or stale: an ordinary step
                return self._generate_step(context, params)
            divergence = verification.first_divergence
            kept = verification.n if divergence is None else divergence
            kept = min(kept, params.max_step_tokens)
            t0 = time.perf_counter()
            # 1. the cache holds the context and the kept tokens (the verification evaluated them);
            # if another call moved it since, evaluate them again and read the next choice afresh
            v = verification
            divergent = [(v.greedy_tokens[kept], v.greedy_logprobs[kept], v.entropies[kept])]
            prefill = 0
            if self._kv.holds(full[: first + kept]):
                self._kv.truncate(first + kept)
            else:
                prefill = self._prefill(full[: first + kept])
                divergent = []
            forced = [(v.tokens[i], v.token_logprobs[i], v.entropies[i]) for i in range(kept)]
            t1 = time.perf_counter()
            self._feeder.begin(params)

            def next_token() -> tuple[int, float, float]:
                if divergent:  # the model's choice at the divergence was read by the verification
                    return divergent.pop()
                return pick_token(self._last_logits(), params, self._rng)

            step = decode_step(
                budget=min(params.max_step_tokens, self.n_ctx - len(tokens) - 1),
                separator=params.separator,
                next_token=next_token,
                is_end=self.is_end_of_generation,
                detokenize=lambda generated: self._decode(generated, tokens),
                feed=self._feed,
                forced=forced,
            )
            extra = self._feeder.end({"token_ids": list(step.token_ids), "kept_tokens": step.kept})
            t2 = time.perf_counter()
            return step.output(
                self.name,
                prompt_tokens=len(tokens),
                prefill_tokens=prefill,
                prefill_seconds=t1 - t0,
                decode_seconds=t2 - t1,
                extra=extra,
            )

    def replay_step(self, context: StepContext, params: StepParams, output: StepOutput) -> tuple[int, float]:
        """Bring the cache to where a live call that wrote ``output`` would have left it.

        Prefills the context for real and returns what that took, ``(prefill tokens, seconds)``: what
        the live call would have measured. Then evaluates the step's tokens (untimed; the replayed call
        is charged its stored decode seconds instead), except the last, as decoding would have.
        """
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        with self._lock:
            tokens = self.context_tokens(context, params.separator)
            t0 = time.perf_counter()
            prefill = self._prefill(tokens)
            seconds = time.perf_counter() - t0
            stored = output.extra.get("token_ids") or []
            ids = [int(t) for t in stored] if isinstance(stored, list) else []
            if len(ids) > 1:
                self._kv.absorb(tokens + ids[:-1], len(tokens))
            return prefill, seconds

    def _decode(self, generated: list[int], context: list[int]) -> str:
        raw = self.llm.detokenize(generated, prev_tokens=context[-8:])
        return raw.decode("utf-8", errors="ignore")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.llm.close()

    def __repr__(self) -> str:
        return f"LlamaCppGenerator({self.name!r}, path={str(self.path)!r}, extra_bufts={self.extra_bufts})"
