"""Evaluate tokens into one llama.cpp context so that a greedy step is a function of its text alone.

llama.cpp's CPU kernels do not give a token the same numbers whatever batch it is evaluated in: with the
default build (llamafile's tiled matrix kernels), a token evaluated alone, or in a batch of another
size, gets logits that differ by up to ~0.5 from the same token in a fresh evaluation of the whole
prompt (measured on qwen2.5-coder-0.5b; ``benchmarks/determinism.py``). A prefix reused from the KV
cache, a step decoded token by token, and the same text evaluated fresh then disagree, and greedy
decoding and judge scores come to depend on what the cache held before.

:class:`KVEvaluator` owns the evaluation of one ``Llama`` context and makes it canonical:

- ``chunk=None`` (**exact**): the build's numbers do not depend on batching (checked by
  :func:`probe_batch_invariance` when the model loads; llama.cpp built with ``GGML_LLAMAFILE=OFF``,
  as ``scripts/setup.sh`` does). Every cached position can be reused.
- ``chunk=B`` (**aligned**): positions are evaluated in batches aligned to multiples of ``B`` (each
  its own ``llama_decode`` call), so a position's numbers depend only on the tokens up to its chunk's
  end. Only whole chunks are reused across calls; the partial last chunk and every position written
  by token-by-token decoding are evaluated again in the canonical way at the next call.

Either way the evaluator keeps llama-cpp-python's bookkeeping (``input_ids``, ``n_tokens``) in step,
so the high-level object stays usable, and it can request logits for chosen positions only (never
``logits_all``), which verification needs.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from arbitrage.errors import BackendError

logger = logging.getLogger(__name__)


class KVEvaluator:
    """Canonical evaluation of tokens into one ``Llama`` context's KV cache (see the module docstring)."""

    def __init__(self, llm: Any, chunk: int | None) -> None:
        import llama_cpp

        if chunk is not None and (chunk <= 0 or llm.n_batch % chunk):
            raise BackendError(f"chunk {chunk} must be positive and divide n_batch {llm.n_batch}")
        self.llm = llm
        self.chunk = chunk
        self._lib = llama_cpp
        self.n_vocab = int(llm.n_vocab())
        self._batch = llama_cpp.llama_batch_init(llm.n_batch, 0, 1)
        self.canonical_upto = 0  # leading cached positions whose KV equals a canonical evaluation

    @property
    def n_tokens(self) -> int:
        return int(self.llm.n_tokens)

    def reusable(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` can be served from the cache (at least one is always evaluated)."""
        cached = self.llm.input_ids[: self.n_tokens]
        n = min(len(cached), len(tokens))
        mismatch = np.nonzero(cached[:n] != np.asarray(tokens[:n], dtype=cached.dtype))[0]
        common = int(mismatch[0]) if mismatch.size else n
        common = min(common, len(tokens) - 1, self.canonical_upto)
        if self.chunk is not None:
            common -= common % self.chunk
        return max(common, 0)

    def evaluate(self, tokens: Sequence[int], start: int, rows: Sequence[int]) -> np.ndarray:
        """Evaluate ``tokens[start:]`` after the first ``start`` cached ones; logits of positions ``rows``.

        Returns a float32 array ``[len(rows), n_vocab]`` in the order of ``rows``; every row must be
        in ``[start, len(tokens))``. The cache afterwards holds exactly ``tokens``.
        """
        end = len(tokens)
        if not 0 <= start < end:
            raise BackendError(f"nothing to evaluate (start {start}, {end} tokens)")
        wanted = {r: i for i, r in enumerate(rows)}
        if any(not start <= r < end for r in wanted):
            raise BackendError("requested logits outside the evaluated positions")
        if self.chunk is not None and start % self.chunk:
            raise BackendError(f"aligned evaluation must start at a multiple of {self.chunk}, got {start}")
        out = np.empty((len(rows), self.n_vocab), dtype=np.float32)
        self.llm._ctx.kv_cache_seq_rm(-1, start, -1)
        self.llm.n_tokens = start
        step = self.chunk or self.llm.n_batch
        for lo in range(start, end, step):
            self._decode(tokens[lo : min(end, lo + step)], lo, wanted, out)
        if self.chunk is None:
            self.canonical_upto = end
        else:
            self.canonical_upto = end - end % self.chunk
        return out

    def feed(self, token: int) -> np.ndarray:
        """Decode mode: evaluate one token after the cache; its logits. Not canonical in aligned mode."""
        position = self.n_tokens
        out = np.empty((1, self.n_vocab), dtype=np.float32)
        self._decode([token], position, {position: 0}, out)
        if self.chunk is None:
            self.canonical_upto = position + 1
        return out[0]

    def _decode(self, tokens: Sequence[int], lo: int, wanted: dict[int, int], out: np.ndarray) -> None:
        """One ``llama_decode`` call: ``tokens`` at positions ``lo``...; logits rows into ``out``."""
        hi = lo + len(tokens)
        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, position in enumerate(range(lo, hi)):
            batch.token[i] = tokens[i]
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = position in wanted
        code = self._lib.llama_decode(self.llm._ctx.ctx, batch)
        if code != 0:
            raise BackendError(f"llama_decode failed with code {code}")
        self.llm.input_ids[lo:hi] = tokens
        self.llm.n_tokens = hi
        for i, position in enumerate(range(lo, hi)):
            if position in wanted:
                pointer = self._lib.llama_get_logits_ith(self.llm._ctx.ctx, i)
                if not pointer:
                    raise BackendError("llama.cpp returned no logits")
                view = np.ctypeslib.as_array(
                    ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
                )
                out[wanted[position]] = view

    def holds(self, tokens: Sequence[int]) -> bool:
        """Whether the cache starts with exactly ``tokens``."""
        n = len(tokens)
        return self.n_tokens >= n and bool(np.array_equal(self.llm.input_ids[:n], np.asarray(tokens)))

    def truncate(self, length: int) -> None:
        """Keep only the first ``length`` cached positions."""
        if length < self.n_tokens:
            self.llm._ctx.kv_cache_seq_rm(-1, length, -1)
            self.llm.n_tokens = length
        self.canonical_upto = min(self.canonical_upto, length)
        if self.chunk is not None:
            self.canonical_upto -= self.canonical_upto % self.chunk

    def absorb(self, tokens: Sequence[int], decoded_from: int) -> None:
        """Put ``tokens[decoded_from:]`` into the cache after its first ``decoded_from`` positions, as
        token-by-token decoding would have left them (a replayed step). In aligned mode they count as
        non-canonical, like decoded tokens; in exact mode batching does not change their numbers."""
        canonical = self.canonical_upto
        self.evaluate(tokens, decoded_from, [len(tokens) - 1])
        if self.chunk is not None:
            self.canonical_upto = min(canonical, decoded_from - decoded_from % self.chunk)

    def forget(self) -> None:
        """Drop the whole cache (the next evaluation starts from scratch)."""
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        self.llm.n_tokens = 0
        self.canonical_upto = 0

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None


def probe_batch_invariance(evaluator: KVEvaluator, tokens: Sequence[int], fed: int = 12) -> bool:
    """Whether this build gives the last ``fed`` positions of ``tokens`` the same logits whether they are
    decoded one at a time or evaluated in one batch with the rest (what verification relies on).

    Compares every one of those positions' logits bit for bit. Leaves the cache empty.
    """
    n = len(tokens)
    if n < fed + 2:
        raise BackendError(f"the batch-invariance probe needs at least {fed + 2} tokens")
    rows = list(range(n - fed - 1, n))
    evaluator.forget()
    batched = evaluator.evaluate(tokens, 0, rows).copy()
    evaluator.forget()
    decoded = [evaluator.evaluate(tokens[: n - fed], 0, [n - fed - 1])[0].copy()]
    decoded += [evaluator.feed(token).copy() for token in tokens[n - fed :]]
    evaluator.forget()
    diff = float(np.max(np.abs(batched - np.stack(decoded))))
    logger.debug("batch-invariance probe: max |Δlogit| %.3g over %d positions", diff, len(rows))
    return diff == 0.0
