"""Step-boundary, token-choice and decode-loop helpers shared by the backends that decode token by token.

``find_step_end`` is the one rule for where a step ends in decoded text; the llama.cpp, transformers and
OpenAI-compatible backends all apply it, so a step means the same thing whichever backend wrote it.
``decode_step`` is the loop the in-process backends (llama.cpp, transformers) share: pick a token, stop
on an end-of-generation token, on the separator or at the token budget, else feed the token back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from arbitrage.backends.base import FinishReason, StepOutput, StepParams


def find_step_end(text: str, separator: str) -> int | None:
    """Index where the step in ``text`` ends (start of the separator), or None if it has not ended.

    Works on decoded text, so a separator that straddles token boundaries, or shares a token with
    the step's last characters, is found all the same. Separators before any content (a model that
    opens with a blank line) do not end the step.
    """
    body_start = len(text) - len(text.lstrip())
    cut = text.find(separator, body_start)
    while cut >= 0 and not text[body_start:cut].strip():
        cut = text.find(separator, cut + 1)
    return cut if cut >= 0 else None


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax of a 1-D logits vector."""
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - np.log(np.exp(shifted).sum())


def entropy(logprobs: np.ndarray) -> float:
    """Entropy (nats) of the distribution whose log-probabilities are ``logprobs``."""
    return float(-(np.exp(logprobs) * logprobs).sum())


def normalise_logits(logits: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(shifted, log_total, entropy)`` of 1-D ``logits``: ``shifted[t] - log_total`` is the
    log-probability of token ``t``; the entropy is in nats.

    One exponential over the vocabulary in the logits' own float32 (sums in float64): what the greedy
    decode loop needs per token without materialising a float64 log-softmax (that costs about 1 ms a
    token on a 152k vocabulary here; this about 0.2 ms). Agrees with :func:`log_softmax` and
    :func:`entropy` to ~1e-7.
    """
    shifted = logits - logits.max()
    weights = np.exp(shifted)
    total = float(weights.sum(dtype=np.float64))
    log_total = float(np.log(total))
    return shifted, log_total, log_total - float((weights * shifted).sum(dtype=np.float64)) / total


def pick_token(logits: np.ndarray, params: StepParams, rng: np.random.Generator) -> tuple[int, float, float]:
    """The next token from 1-D ``logits`` under ``params``, with its log-probability and the entropy.

    Greedy (temperature 0) takes the argmax of the raw logits and :func:`normalise_logits`; sampling
    builds the full log-softmax for :func:`choose_token`.
    """
    if params.temperature == 0:
        token = int(np.argmax(logits))
    else:
        token = choose_token(log_softmax(logits), params, rng)
    shifted, log_total, row_entropy = normalise_logits(logits)
    return token, float(shifted[token]) - log_total, row_entropy


def row_summaries(
    logits: np.ndarray, given: Sequence[int]
) -> tuple[list[float], list[int], list[float], list[float]]:
    """Per row of next-token ``logits`` (``[m, vocab]``): the log-probability of ``given[i]`` (rows
    beyond ``given`` have none), the greedy token, its log-probability and the entropy (nats).

    Verification reads these from the rows of a teacher-forced pass; they are computed as the decode
    loop computes them (:func:`normalise_logits`), so a kept prefix carries the same kind of numbers.
    """
    logprobs: list[float] = []
    greedy: list[int] = []
    greedy_logprobs: list[float] = []
    entropies: list[float] = []
    for i, row in enumerate(logits):
        shifted, log_total, row_entropy = normalise_logits(row)
        best = int(np.argmax(row))
        greedy.append(best)
        greedy_logprobs.append(float(shifted[best]) - log_total)
        entropies.append(row_entropy)
        if i < len(given):
            logprobs.append(float(shifted[given[i]]) - log_total)
    return logprobs, greedy, greedy_logprobs, entropies


def choose_token(logprobs: np.ndarray, params: StepParams, rng: np.random.Generator) -> int:
    """Greedy pick at temperature 0, else a temperature / top-p sample from ``logprobs``."""
    if params.temperature == 0:
        return int(np.argmax(logprobs))
    # shift, then divide: the best token's score stays 0, so a tiny (even subnormal) temperature sends the
    # others to exp(-inf) = 0 instead of making every score -inf and the difference NaN
    with np.errstate(over="ignore"):
        scaled = (logprobs - logprobs.max()) / params.temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, params.top_p)) + 1]
        mask = np.zeros_like(probs)
        mask[keep] = probs[keep]
        probs = mask / mask.sum()
    return int(rng.choice(probs.size, p=probs))


@dataclass(frozen=True, slots=True)
class DecodedStep:
    """What :func:`decode_step` produced: the step text (separator cut, stripped) and per-token data."""

    text: str
    finish: FinishReason
    tokens: int  # generated tokens, including an end or separator token
    logprobs: tuple[float, ...]  # [tokens] log-probability of each chosen token
    entropies: tuple[float, ...]  # [tokens] entropy (nats) of each next-token distribution
    token_ids: tuple[int, ...] = ()  # [tokens] the chosen token ids (kept prefix included)
    kept: int = 0  # leading tokens taken from a verified step instead of being decoded

    def output(
        self,
        model: str,
        *,
        prompt_tokens: int,
        prefill_tokens: int,
        prefill_seconds: float,
        decode_seconds: float,
        extra: dict[str, object] | None = None,
    ) -> StepOutput:
        """The backend's :class:`StepOutput` for this step, with its prompt and timing figures."""
        return StepOutput(
            text=self.text,
            finish_reason=self.finish,
            model=model,
            tokens=self.tokens,
            token_logprobs=self.logprobs,
            token_entropies=self.entropies,
            prompt_tokens=prompt_tokens,
            prefill_tokens=prefill_tokens,
            prefill_seconds=prefill_seconds,
            decode_seconds=decode_seconds,
            extra=extra or {},
        )


def decode_step(
    budget: int,
    separator: str,
    next_token: Callable[[], tuple[int, float, float]],
    is_end: Callable[[int], bool],
    detokenize: Callable[[list[int]], str],
    feed: Callable[[int], None],
    forced: Sequence[tuple[int, float, float]] = (),
) -> DecodedStep:
    """Decode one step, token by token, until an end token, the separator or ``budget`` tokens.

    ``next_token()`` picks from the model's current next-token distribution and returns ``(token,
    logprob, entropy)``; ``is_end(token)`` tells an end-of-generation token; ``detokenize(ids)`` turns
    the generated ids into text; ``feed(token)`` evaluates a kept token so that the next distribution is
    ready. The text of an ended answer excludes the end token; a separator, wherever token boundaries
    put it, cuts the text at its start (:func:`find_step_end`).

    ``forced`` is a kept prefix: ``(token, logprob, entropy)`` items already evaluated into the model's
    cache (by a verification), taken as the first tokens without calling ``next_token`` or ``feed``;
    the stopping rules apply to them as to decoded tokens.
    """
    generated: list[int] = []
    logprobs: list[float] = []
    entropies: list[float] = []
    text = ""
    finish = FinishReason.LENGTH
    while len(generated) < budget:
        is_forced = len(generated) < len(forced)
        token, logprob, token_entropy = forced[len(generated)] if is_forced else next_token()
        generated.append(token)
        logprobs.append(logprob)
        entropies.append(token_entropy)
        if is_end(token):
            finish = FinishReason.EOS
            text = detokenize(generated[:-1])
            break
        text = detokenize(generated)
        cut = find_step_end(text, separator)
        if cut is not None:
            text = text[:cut]
            finish = FinishReason.STEP
            break
        if len(generated) < budget and not is_forced:
            feed(token)
    else:
        text = detokenize(generated)
    kept = min(len(forced), len(generated))
    return DecodedStep(
        text.strip(), finish, len(generated), tuple(logprobs), tuple(entropies), tuple(generated), kept
    )
