"""Reading a server's prompt logprobs: which prompt tokens cover a text span, and the model's view of each.

Two response shapes of the completions endpoint carry the model's log-probabilities of the *prompt*:

- vLLM's ``prompt_logprobs`` (request field, sent in ``extra_body``): one entry per prompt token, the first
  ``None``, each a map ``token id -> {logprob, rank, decoded_token}`` holding the prompt token and the
  top-k alternatives (rank 1 = the model's greedy choice). The prompt token is the one the response's
  ``prompt_token_ids`` names when it has them, else the entry that is not rank 1 (a single entry is
  both). Character positions come from the decoded tokens, aligned at the *end* of the prompt (a BOS
  token the server adds shifts the start, never the end).
- ``echo=True`` with ``logprobs=k`` (OpenAI's legacy completions, vLLM, llama-cpp-python with
  ``logits_all``): ``tokens``, ``token_logprobs`` and ``top_logprobs`` (token text -> logprob, the greedy
  choice is the highest) over the prompt and then the generated tokens. Character positions come from
  the token texts aligned at the end of the echoed text (``text_offset`` is not used: llama-cpp-python
  counts it in the text without special tokens). Token ids are not given: a token is identified by a
  stable hash of its text (two tokens agree when their texts do).

Both are turned into :class:`PromptToken` rows; :func:`span_tokens` picks those that cover a text span.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

END_TOKEN = -2  # id of "the model ended its answer" where the server gives no token for it
PromptTokens = list[tuple[object, int]]  # [p] every prompt token: (its key, character offset in the prompt)
# the key is the server's token id where it gives one, else the token's text; the first token's offset
# is -1 where its text is unknown (vLLM sends no entry for it)


def text_id(text: str) -> int:
    """Stable id of a token known only by its text (echo responses carry no ids)."""
    return zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class PromptToken:
    """One prompt position as the server reports it."""

    text: str  # the token's text
    start: int  # character offset of the token in the prompt text the client sent
    token: int  # token id (the server's, or text_id of the text)
    logprob: float  # log π(token | prompt before it), nats
    greedy: int  # the model's most likely token there (same id space as ``token``)
    greedy_logprob: float  # its log-probability

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True, slots=True)
class PromptView:
    """A server's view of a whole prompt and of the one token it would write next."""

    tokens: PromptTokens  # [p] every prompt token (key, character offset)
    rows: list[PromptToken]  # the prompt tokens that carry a logprob (all but the first)
    generated: list[PromptToken]  # the generated token, if the server sent an entry for it
    finish: str | None  # finish reason of the one-token completion ("stop": the model ended there)
    prompt_tokens: int  # the server's usage count of prompt tokens (0 = not reported)
    cached_tokens: int  # of which its prefix cache served (0 = not reported)


def _get(item: Any, key: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


def from_prompt_logprobs(
    entries: Sequence[Any], prompt_ids: Sequence[int] | None, prompt_length: int
) -> tuple[PromptTokens, list[PromptToken]]:
    """(every prompt token, rows) from vLLM's ``prompt_logprobs`` (first entry ``None``), positioned in a
    prompt of ``prompt_length`` characters by aligning the decoded tokens' end with the prompt's end."""
    raw: list[tuple[object, str, tuple[int, float, int, float] | None]] = []
    for index, entry in enumerate(entries):
        known = prompt_ids is not None and index < len(prompt_ids)
        if entry is None:
            raw.append((int(prompt_ids[index]) if known else None, "", None))  # type: ignore[index]
            continue
        options = {int(key): value for key, value in dict(entry).items()}
        ranked = sorted(options, key=lambda key: _get(options[key], "rank") or math.inf)
        greedy = ranked[0]
        if known:
            token = int(prompt_ids[index])  # type: ignore[index]
        else:
            others = [key for key in options if key != greedy]
            token = others[0] if others else greedy
        chosen = options.get(token)
        if chosen is None:
            raw.append((token, "", None))
            continue
        text = str(_get(chosen, "decoded_token") or "")
        logprob, greedy_logprob = float(_get(chosen, "logprob")), float(_get(options[greedy], "logprob"))
        raw.append((token, text, (token, logprob, greedy, greedy_logprob)))
    position = prompt_length - sum(len(text) for _, text, _ in raw)
    tokens: PromptTokens = []
    rows = []
    for index, (key, text, seen) in enumerate(raw):
        tokens.append((key, position if index or text else -1))
        if seen is not None:
            rows.append(PromptToken(text, position, *seen))
        position += len(text)
    return tokens, rows


def from_echo(
    logprobs: Any, text: str, prompt_length: int
) -> tuple[PromptTokens, list[PromptToken], list[PromptToken]]:
    """(every prompt token, prompt rows, generated rows) from a completion's ``logprobs`` whose token
    texts make up ``text`` (the echoed prompt and the generated text). Positions come from the token
    texts aligned at the end of ``text``, not from ``text_offset``: servers that render special tokens
    as empty text (llama-cpp-python) count their offsets in a shorter text. Check :func:`lines_up`
    first."""
    texts = [str(token) for token in _get(logprobs, "tokens") or []]
    values = list(_get(logprobs, "token_logprobs") or [])
    tops = list(_get(logprobs, "top_logprobs") or [])
    position = len(text) - sum(len(token) for token in texts)
    tokens: PromptTokens = []
    prompt: list[PromptToken] = []
    generated: list[PromptToken] = []
    for i, token in enumerate(texts):
        start, position = position, position + len(token)
        if start < prompt_length:
            tokens.append((token, start))
        value = values[i] if i < len(values) else None
        top = tops[i] if i < len(tops) else None
        if value is None or not top:
            continue  # the first prompt token has no logprob
        alternatives = {str(k): float(v) for k, v in dict(top).items()}
        best = max(alternatives, key=lambda key: alternatives[key])
        row = PromptToken(token, start, text_id(token), float(value), text_id(best), alternatives[best])
        (prompt if row.start < prompt_length else generated).append(row)
    return tokens, prompt, generated


def verified_start(context: PromptTokens, full: PromptTokens, context_length: int) -> int:
    """Character offset in the full prompt where the verified tokens start: at the first token of the
    full prompt's tokenisation past those it shares with the context's own (as the local backends'
    common-prefix rule: a separator that tokenises differently before the step's text, e.g. SmolLM2's
    ``"\n\n"`` that becomes ``"\n", "\n"`` before a word, is verified with the step)."""
    shared = 0
    for (key, _), (other, _) in zip(context, full, strict=False):
        if key != other:
            break
        shared += 1
    if shared == len(full):
        return context_length
    return min(max(full[shared][1], 0), context_length)


def lines_up(logprobs: Any, text: str, start: int) -> bool:
    """Whether the token texts of ``logprobs`` end with ``text[start:]``: the returned tokens cover the
    text from ``start`` on, the generated text included. False for llama-cpp-python's echo when the
    prompt does not begin with the model's BOS token: there each entry holds the model's view one
    position late and the generated token is left out (abetlen/llama-cpp-python#1983)."""
    tokens = [str(token) for token in _get(logprobs, "tokens") or []]
    return "".join(tokens).endswith(text[start:])


def span_tokens(rows: Sequence[PromptToken], start: int) -> list[PromptToken]:
    """The rows that end after character ``start``: the tokens of the text from there on."""
    return [row for row in rows if row.end > start]
