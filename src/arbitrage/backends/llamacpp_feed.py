"""Feeding a llama.cpp decoding call's tokens to the KV cache, with token-level speculation.

Plain decoding evaluates each chosen token on its own. With a :class:`Speculation` attached, a greedy
call lets the proposer draft ``k`` tokens after each token the model chose and evaluates all ``k + 1`` in
one batch; while the model keeps choosing the proposed tokens they cost nothing, and the first one it
does not choose drops the rest of the round from the cache (see ``backends/speculation.py``). Speculation
is lossless only for greedy steps, so sampled calls decode plainly.
"""

from __future__ import annotations

import time

import numpy as np

from arbitrage.backends.base import StepParams
from arbitrage.backends.llamacpp_eval import KVEvaluator
from arbitrage.backends.speculation import Speculation, SpeculationStats


class SpeculativeFeed:
    """How a :class:`~arbitrage.backends.llamacpp.LlamaCppGenerator` feeds decoded tokens to its KV cache.

    One per generator (one KV cache). A decoding call runs :meth:`begin`, then :meth:`feed` for each
    token it chose, then :meth:`end`; ``speculation`` is the attached proposer (None: plain decoding).
    """

    def __init__(self, kv: KVEvaluator, n_ctx: int) -> None:
        self.kv = kv
        self.n_ctx = n_ctx
        self.speculation: Speculation | None = None
        self._speculating = False  # this call decodes greedily with speculation
        self._ahead: list[tuple[int, np.ndarray]] = []  # proposed tokens in the cache, logits after each
        self._round: tuple[int, float, float] = (0, 0.0, 0.0)  # open round: k, proposer s, verify s
        self._round_accepted = 0
        self._call_stats = SpeculationStats()

    def begin(self, params: StepParams) -> None:
        """Start a decoding call: speculate only for greedy steps (it is lossless only there)."""
        self._ahead.clear()
        self._round = (0, 0.0, 0.0)
        self._speculating = self.speculation is not None and params.temperature == 0
        self._call_stats = SpeculationStats()

    def feed(self, token: int) -> np.ndarray:
        """Evaluate one generated token; return the next-token logits after it.

        With speculation (greedy calls), a token the proposer proposed and the cache already holds costs
        nothing; otherwise the proposer drafts ``k`` tokens after it and all ``k + 1`` are evaluated in
        one batch, their logits kept for the next choices.
        """
        spec = self.speculation
        if spec is None or not self._speculating:
            return self.kv.feed(token)
        if self._ahead:
            if self._ahead[0][0] == token:  # the proposal is the model's own choice: keep it
                logits = self._ahead.pop(0)[1]
                self._round_accepted += 1
                if not self._ahead:
                    self._close_round()
                return logits
            self.kv.truncate(self.kv.n_tokens - len(self._ahead))  # drop the rejected proposals
            self._ahead.clear()
            self._close_round()
        k = min(spec.controller.next_k(), self.n_ctx - self.kv.n_tokens - 2)
        t0 = time.perf_counter()
        if k <= 0:
            logits = self.kv.feed(token)
            spec.controller.observe_plain(time.perf_counter() - t0)
            self._call_stats.observe_plain()
            return logits
        context = [*map(int, self.kv.llm.input_ids[: self.kv.n_tokens]), token]
        proposals = spec.proposer.propose(context, k)[:k]
        t1 = time.perf_counter()
        start = len(context) - 1
        full = context + proposals
        rows = self.kv.evaluate(full, start, list(range(start, len(full))))
        if not proposals:  # nothing to verify (a text-level proposal that did not align, a full context):
            # the token was decoded on its own, and the proposer's seconds bought nothing
            spec.controller.observe_plain(time.perf_counter() - t1)
            spec.controller.observe_empty(k, t1 - t0)
            self._call_stats.observe_plain()
            self._call_stats.observe_empty(t1 - t0)
            return rows[0]
        self._ahead = list(zip(proposals, rows[1:], strict=True))
        self._round = (len(proposals), t1 - t0, time.perf_counter() - t1)
        self._round_accepted = 0
        return rows[0]

    def end(self, extra: dict[str, object]) -> dict[str, object]:
        """Finish a decoding call: close an open round and report it in the step's ``extra``."""
        if self._ahead or self._round[0]:
            self._close_round()
        self._ahead.clear()
        if self._speculating:
            extra["speculation"] = self._call_stats.to_dict()
        self._speculating = False
        return extra

    def _close_round(self) -> None:
        """Account for the open speculation round (its proposals kept or dropped by now)."""
        k, proposer_seconds, verify_seconds = self._round
        if self.speculation is not None and (k or verify_seconds):
            self.speculation.controller.observe_round(
                k, self._round_accepted, proposer_seconds, verify_seconds
            )
            self._call_stats.observe_round(k, self._round_accepted, proposer_seconds, verify_seconds)
        self._round = (0, 0.0, 0.0)
        self._round_accepted = 0
