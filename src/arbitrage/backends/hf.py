"""Generator backend on Hugging Face transformers, in process, on CPU or GPU.

Spec: ``hf:PATH?option=value&...`` where ``PATH`` is a local model folder (``config.json``, weights,
tokenizer). Nothing is ever downloaded: loading (``backends/hf_load.py``) passes ``local_files_only=True``,
and a path that is not a folder is an error, not a hub id. Options:

- ``device``: ``auto`` (default: cuda, else mps, else cpu), ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
- ``dtype``: ``auto`` (default: float32 on CPU, the checkpoint's dtype on a GPU), ``float32``,
  ``float16``, ``bfloat16``.
- ``template``: a chat template for folders whose tokenizer has none, or to override it (``chatml``,
  ``gemma``, ``plain``, or a file; see ``backends/templates.py``). Default: the tokenizer's own.
- ``n_ctx``: context limit (default: the model's ``max_position_embeddings``).
- ``name``: the name shown in traces (default: the folder name).

Per step call (one KV cache per generator, calls serialised by a lock, as for llama.cpp):
1. Render the question with the chat template, tokenise it and the shared solution text separately.
2. Reuse the KV cache: find the longest prefix shared with the tokens already in the cache, crop the
   cache back to it (``DynamicCache.crop``; a cache that cannot be cropped exactly, e.g. past a sliding
   window, is dropped and rebuilt) and evaluate only the rest: ``prefill_tokens`` is that count.
3. Decode token by token: log-softmax of the last logits for the chosen token's logprob and the entropy,
   greedy or temperature/top-p pick, stop on an end-of-generation token, on the separator in the
   decoded text (``find_step_end``), or on the token cap.

Verification (the :class:`~arbitrage.backends.base.Verifier` role):
- ``verify_step`` tokenises prompt + ``solution_text(steps + (step,))`` (the separator only after a step
  that ended with one; nothing after an EOS or capped step); the verified tokens are those beyond the
  prefix shared with the context's tokens. One forward pass over what the cache lacks of the context
  (at least its last token, whose logits predict the first verified token) and the verified tokens,
  keeping only the last ``n + 1`` logit rows (``logits_to_keep``). The verified tokens stay in the cache.
- ``continue_step`` takes the agreed tokens (and, greedy, the model's token at the divergence) from the
  verification, crops the cache to the context plus the kept tokens and decodes from there with the same
  loop as ``generate_step``; when the verification agrees to the end, nothing is evaluated at all.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams, Verification
from arbitrage.backends.hf_load import DTYPES, load_causal_lm
from arbitrage.backends.spec_options import SpecOptions
from arbitrage.backends.stepping import DecodedStep, choose_token, decode_step
from arbitrage.backends.templates import PromptTemplate
from arbitrage.errors import BackendError, ConfigError
from arbitrage.prompts import PromptStyle, solution_text

logger = logging.getLogger(__name__)

OPTION_NAMES = ("device", "dtype", "template", "n_ctx", "name")


class HFGenerator:
    """A transformers causal LM from a local folder, writing one step per call with KV-cache reuse."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        template: str | None = None,
        n_ctx: int | None = None,
        prompt_style: PromptStyle | None = None,
        seed: int = 0,
    ) -> None:
        loaded = load_causal_lm(path, device, dtype)
        self.name = name or loaded.folder.name
        self.path = loaded.folder
        self.device = loaded.device
        self.prompt_style = prompt_style or PromptStyle()
        self.tokenizer: Any = loaded.tokenizer
        self.model: Any = loaded.model
        self.n_ctx = n_ctx or int(getattr(self.model.config, "max_position_embeddings", 0) or 4096)
        if self.n_ctx <= 0:
            raise ConfigError(f"n_ctx must be positive, got {self.n_ctx}")
        self._template = self._pick_template(template)
        self._eos_ids = self._end_token_ids()
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()  # one KV cache: calls on this model are serialised
        self._past: Any = None  # the transformers cache of the tokens in self._cached
        self._cached: list[int] = []
        self._prompt_cache: dict[str, list[int]] = {}
        self._logits_to_keep = True
        self._closed = False

    # -- prompt construction -------------------------------------------------------------------------

    def _pick_template(self, template: str | None) -> PromptTemplate | None:
        if template is not None:
            return PromptTemplate.load(template)
        if getattr(self.tokenizer, "chat_template", None):
            return None  # the tokenizer's own
        logger.warning("%s has no chat template; using a plain Question/Answer format", self.name)
        return PromptTemplate.load("plain")

    def _end_token_ids(self) -> set[int]:
        ids: set[int] = set()
        config_eos = getattr(self.model.generation_config, "eos_token_id", None)
        for source in (self.tokenizer.eos_token_id, config_eos):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, list | tuple):
                ids.update(int(i) for i in source)
        return ids

    def render_prompt(self, question: str) -> str:
        """The chat-formatted prompt for ``question``, ending where the answer begins."""
        if self._template is not None:
            return self._template.render(self.prompt_style, question)
        try:
            return str(
                self.tokenizer.apply_chat_template(
                    self.prompt_style.messages(question), add_generation_prompt=True, tokenize=False
                )
            )
        except Exception as exc:  # a template that rejects a system role, or other Jinja errors
            logger.warning("chat template of %s failed (%s); folding the system text in", self.name, exc)
            messages = [{"role": "user", "content": self.prompt_style.single_turn(question)}]
            template = self.tokenizer.apply_chat_template
            rendered = template(messages, add_generation_prompt=True, tokenize=False)
            return str(rendered)

    def _prompt_tokens(self, question: str) -> list[int]:
        cached = self._prompt_cache.get(question)
        if cached is None:
            # The tokenizer's chat template writes any BOS itself; the fallback formats need it added.
            special = self._template is not None
            cached = list(self.tokenizer(self.render_prompt(question), add_special_tokens=special).input_ids)
            self._prompt_cache = {question: cached}
        return cached

    def context_tokens(self, context: StepContext, separator: str) -> list[int]:
        """Token ids of the full context: chat prompt, then the shared solution text."""
        tokens = list(self._prompt_tokens(context.question))
        text = solution_text(context.steps, separator)
        if text:
            tokens += list(self.tokenizer(text, add_special_tokens=False).input_ids)
        return tokens

    # -- evaluation ----------------------------------------------------------------------------------

    def _reset_cache(self) -> None:
        self._past = None
        self._cached = []

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Crop the cache to the longest prefix it shares with ``tokens``; return that length."""
        limit = min(len(self._cached), len(tokens) - 1)  # always evaluate one token: fresh logits
        common = 0
        while common < limit and self._cached[common] == tokens[common]:
            common += 1
        if self._past is None or common == 0:
            self._reset_cache()
            return 0
        drop = len(self._cached) - common
        if drop:
            if not getattr(self._past, "is_croppable", True) or not hasattr(self._past, "crop"):
                self._reset_cache()
                return 0
            try:
                self._past.crop(-drop)  # negative: remove that many tokens (transformers 4.x and 5.x)
            except Exception as exc:
                logger.debug("%s: cache crop failed (%s); prefilling from scratch", self.name, exc)
                self._reset_cache()
                return 0
            if self._past.get_seq_length() != common:
                self._reset_cache()
                return 0
        self._cached = self._cached[:common]
        return common

    def _forward(self, ids: list[int], rows: int = 1) -> Any:
        """Evaluate ``ids`` after the cached tokens; return the last position's logits (1-D), or with
        ``rows > 1`` the last ``rows`` positions' logits (``[rows, vocab]``)."""
        import torch

        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        kwargs: dict[str, Any] = {"past_key_values": self._past, "use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = rows
        try:
            out = self.model(input_ids=input_ids, **kwargs)
        except TypeError:
            if not self._logits_to_keep:
                raise
            self._logits_to_keep = False  # an architecture without logits_to_keep
            kwargs.pop("logits_to_keep")
            out = self.model(input_ids=input_ids, **kwargs)
        self._past = out.past_key_values
        self._cached.extend(ids)
        return out.logits[0, -1] if rows == 1 else out.logits[0, -rows:]

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        import torch

        with self._lock, torch.inference_mode():
            try:
                return self._generate_step(context, params)
            except Exception:
                self._reset_cache()  # a failed forward leaves the cache in an unknown state
                raise

    def _generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        tokens = self.context_tokens(context, params.separator)
        if len(tokens) >= self.n_ctx:
            raise BackendError(
                f"{self.name}: context of {len(tokens)} tokens does not fit n_ctx={self.n_ctx}; "
                "lower --max-steps/--max-tokens"
            )
        rng = self._rng if params.seed is None else np.random.default_rng([params.seed, len(tokens)])
        # 1. prefill what the KV cache does not hold yet
        t0 = time.perf_counter()
        reused = self._reuse_prefix(tokens)
        logits = self._forward(tokens[reused:])
        self._sync()
        t1 = time.perf_counter()
        # 2. decode until EOS, separator or the cap
        current = [logits]  # the next-token logits, replaced by each fed token's

        def next_token() -> tuple[int, float, float]:
            return _pick(current[0], params, rng)

        def feed(token: int) -> None:
            current[0] = self._forward([token])

        step = self._decode_step(tokens, params, next_token, feed)
        self._sync()
        t2 = time.perf_counter()
        return step.output(
            self.name,
            prompt_tokens=len(tokens),
            prefill_tokens=len(tokens) - reused,
            prefill_seconds=t1 - t0,
            decode_seconds=t2 - t1,
            extra={"device": self.device},
        )

    # -- verification (the Verifier role) -------------------------------------------------------------

    def verified_tokens(
        self, context: StepContext, step: StepOutput, separator: str
    ) -> tuple[list[int], int]:
        """Token ids of the context followed by ``step`` (its separator only when it ended with one), and
        where the verified tokens start: the length of the prefix shared with the context's own tokens."""
        context_ids = self.context_tokens(context, separator)
        steps = (*context.steps, step.text)
        text = solution_text(steps, separator)
        if step.finish_reason != FinishReason.STEP:
            text = text[: len(text) - len(separator)]  # an ended or capped step has no separator after it
        full = list(self._prompt_tokens(context.question))
        if text:
            full += list(self.tokenizer(text, add_special_tokens=False).input_ids)
        common = 0
        while common < min(len(full), len(context_ids)) and full[common] == context_ids[common]:
            common += 1
        return full, common

    def verify_step(self, context: StepContext, step: StepOutput, params: StepParams) -> Verification:
        """Teacher-force ``step`` after ``context`` in one forward pass; leave it in the KV cache."""
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        import torch

        with self._lock, torch.inference_mode():
            try:
                return self._verify_step(context, step, params)
            except Exception:
                self._reset_cache()
                raise

    def _verify_step(self, context: StepContext, step: StepOutput, params: StepParams) -> Verification:
        import torch

        full, start = self.verified_tokens(context, step, params.separator)
        if len(full) >= self.n_ctx:
            raise BackendError(
                f"{self.name}: context and step of {len(full)} tokens do not fit n_ctx={self.n_ctx}"
            )
        start = max(start, 1)  # a first position's logits need a token before it
        verified = full[start:]
        n = len(verified)
        t0 = time.perf_counter()
        # 1. keep what the cache shares with the context, short of the token before the step
        reused = self._reuse_prefix(full[:start])
        # 2. one pass over the rest, logits for the step's positions and the one after only
        logits = self._forward(full[reused:], rows=n + 1).reshape(n + 1, -1)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        greedy_logprobs, greedy = logprobs.max(dim=-1)
        entropies = -(logprobs.exp() * logprobs).sum(dim=-1)
        index = torch.tensor(verified, dtype=torch.long, device=logprobs.device)
        token_logprobs = logprobs[:n].gather(1, index.unsqueeze(1)).squeeze(1) if n else logprobs[:0, 0]
        greedy_ids = [int(t) for t in greedy.tolist()]
        result = Verification(
            model=self.name,
            text=step.text,
            finish_reason=step.finish_reason,
            tokens=tuple(verified),
            token_logprobs=tuple(float(x) for x in token_logprobs.tolist()),
            greedy_tokens=tuple(greedy_ids),
            greedy_logprobs=tuple(float(x) for x in greedy_logprobs.tolist()),
            entropies=tuple(float(x) for x in entropies.tolist()),
            end_is_eos=greedy_ids[n] in self._eos_ids,
            prompt_tokens=start,
            prefill_tokens=len(full) - reused,
            seconds=0.0,
            extra={"device": self.device, "context_tokens": start},
        )
        self._sync()
        return dataclasses.replace(result, seconds=time.perf_counter() - t0)

    def continue_step(
        self, context: StepContext, params: StepParams, verification: Verification
    ) -> StepOutput:
        """This model's step after ``context``, keeping the verified tokens up to the first divergence.

        Greedy decoding gives :meth:`generate_step`'s text. At temperature > 0 the kept tokens are kept
        all the same and sampling starts at the divergence. A verification by another model, or of a
        context whose tokens it did not start after, keeps nothing (a plain step).
        """
        if self._closed:
            raise BackendError(f"{self.name} is closed")
        import torch

        with self._lock, torch.inference_mode():
            try:
                return self._continue_step(context, params, verification)
            except Exception:
                self._reset_cache()
                raise

    def _continue_step(
        self, context: StepContext, params: StepParams, verification: Verification
    ) -> StepOutput:
        tokens = self.context_tokens(context, params.separator)
        if len(tokens) >= self.n_ctx:
            raise BackendError(
                f"{self.name}: context of {len(tokens)} tokens does not fit n_ctx={self.n_ctx}; "
                "lower --max-steps/--max-tokens"
            )
        usable = verification.model == self.name and verification.extra.get("context_tokens") == len(tokens)
        divergence = verification.first_divergence
        kept = (verification.n if divergence is None else divergence) if usable else 0
        # The model's own token at the divergence is known too, for greedy decoding.
        known = (
            kept + 1
            if usable and params.temperature == 0 and kept < len(verification.greedy_tokens)
            else kept
        )
        picks = [
            (
                verification.tokens[i] if i < kept else verification.greedy_tokens[i],
                verification.token_logprobs[i] if i < kept else verification.greedy_logprobs[i],
                verification.entropies[i],
            )
            for i in range(known)
        ]
        rng = self._rng if params.seed is None else np.random.default_rng([params.seed, len(tokens)])
        sequence = list(tokens)  # the context, then every token fed back
        current: list[Any] = [None]  # next-token logits once this call has evaluated anything
        prefill = {"tokens": 0, "seconds": 0.0}

        def evaluate() -> None:
            """Bring the cache up to ``sequence``; the first time, reuse and crop (a prefill if lost)."""
            if current[0] is not None:
                current[0] = self._forward(sequence[-1:])
                return
            t0 = time.perf_counter()
            reused = self._reuse_prefix(sequence)
            current[0] = self._forward(sequence[reused:])
            if len(sequence) - reused > 1:  # the verified tokens were not in the cache any more
                prefill["tokens"] = len(sequence) - reused - 1
                prefill["seconds"] = time.perf_counter() - t0

        def next_token() -> tuple[int, float, float]:
            position = len(sequence) - len(tokens)
            if position < known:
                return picks[position]
            if current[0] is None:
                evaluate()
            return _pick(current[0], params, rng)

        def feed(token: int) -> None:
            sequence.append(token)
            if len(sequence) - len(tokens) > kept:  # a kept token is in the cache already
                evaluate()

        t1 = time.perf_counter()
        step = self._decode_step(tokens, params, next_token, feed)
        self._sync()
        t2 = time.perf_counter()
        return step.output(
            self.name,
            prompt_tokens=len(tokens),
            prefill_tokens=int(prefill["tokens"]),
            prefill_seconds=float(prefill["seconds"]),
            decode_seconds=t2 - t1 - float(prefill["seconds"]),
            extra={"device": self.device, "kept_tokens": min(kept, step.tokens)},
        )

    def _decode_step(
        self,
        tokens: list[int],
        params: StepParams,
        next_token: Callable[[], tuple[int, float, float]],
        feed: Callable[[int], None],
    ) -> DecodedStep:
        """Decode one step after the context ``tokens``: until EOS, the separator or the token cap."""
        return decode_step(
            budget=min(params.max_step_tokens, self.n_ctx - len(tokens) - 1),
            separator=params.separator,
            next_token=next_token,
            is_end=lambda token: token in self._eos_ids,
            detokenize=lambda generated: self._decode(generated, tokens),
            feed=feed,
        )

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    def _decode(self, generated: list[int], context: list[int]) -> str:
        """Text of ``generated``, decoded after a few context tokens so leading spaces come out right."""
        tail = context[-4:]
        prefix = str(self.tokenizer.decode(tail, skip_special_tokens=True))
        full = str(self.tokenizer.decode(tail + generated, skip_special_tokens=True))
        if full.startswith(prefix):
            return str(full[len(prefix) :])
        return str(self.tokenizer.decode(generated, skip_special_tokens=True))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._reset_cache()
            del self.model
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return f"HFGenerator({self.name!r}, path={str(self.path)!r}, device={self.device!r})"


def _pick(logits: Any, params: StepParams, rng: np.random.Generator) -> tuple[int, float, float]:
    """The next token from ``logits`` (argmax when greedy, else sampled), its logprob and the entropy."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    if params.temperature == 0:
        token = int(torch.argmax(logprobs))
    else:
        token = choose_token(logprobs.cpu().numpy().astype(np.float64), params, rng)
    return token, float(logprobs[token]), float(-(logprobs.exp() * logprobs).sum())


def load_hf(rest: str, prompt_style: PromptStyle, seed: int) -> HFGenerator:
    """Build the generator of an ``hf:`` spec (registered in ``backends/loader.py``)."""
    spec = f"hf:{rest}"
    path, _, option_text = rest.strip().rpartition("?") if "?" in rest else (rest.strip(), "", "")
    if not path:
        raise ConfigError(f"Model spec {spec!r} needs a model folder: hf:PATH")
    opts = SpecOptions.parse(spec, option_text)
    device = opts.text("device", "auto")
    dtype = opts.choice("dtype", "auto", DTYPES)
    template = opts.optional_text("template")
    n_ctx = opts.integer("n_ctx", 0, minimum=0)
    name = opts.optional_text("name")
    opts.finish(OPTION_NAMES)
    return HFGenerator(
        path,
        device=device,
        dtype=dtype,
        template=template,
        n_ctx=n_ctx or None,
        name=name,
        prompt_style=prompt_style,
        seed=seed,
    )
