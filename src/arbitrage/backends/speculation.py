"""Token-level speculation inside the text a model writes: a proposer drafts k tokens, the writer checks
them in one batched evaluation and keeps the agreed prefix plus its own next token.

Roles (each its own object):

- :class:`TokenProposer`: a model that proposes greedy continuation tokens of a token sequence, in the
  *writer's* vocabulary (same tokenizer; :meth:`TokenProposer.vocabulary_key` tells). The draft model,
  or, for a draft with another tokenizer, a ``backends.text_speculation.TextLevelProposer`` around it.
- :class:`SpeculationController`: picks ``k`` for the next round from the costs and the acceptance it
  has measured, and switches speculation off (``k = 0``) where the measured costs say it cannot pay.
- :class:`Speculation`: a proposer plus a controller and the running :class:`SpeculationStats`; a
  writer backend (llama.cpp) that is given one uses it in its decode loop.

For greedy decoding the output is the writer's own (lossless): every kept token is the writer's argmax
at its position. It is byte-identical to plain decoding where the build gives a small batch the same
numbers as decoding one token at a time (llama.cpp with flash attention, batches < 8 rows, < 4 with
repacked K-quant weights, contexts < 256 tokens measured bit-identical here); beyond that a near-tie
can flip, as for any batched verification.

Cost model of one round with ``k`` proposals, per-token acceptance ``α`` (geometric):

    tokens out  = Σ_{i=0..k} α^i              (the accepted run, plus the writer's own next token)
    seconds     = k · d  +  v(k + 1)           (d: proposer seconds per token; v(n): writer evaluating n)
    plain       = v(1) per token

``v(n)`` is measured per batch size as rounds run (an untried size is interpolated linearly between
``v(1)`` and the largest size measured, or read from prior costs). The controller picks the ``k`` in
``0..k_max`` with the most tokens per second; with ``k = 0`` it decodes plainly and tries ``k = 1``
again every ``probe_every`` tokens (the wait doubling while it still does not pay) so that it notices
when the acceptance changes, unless the costs alone rule speculation out (even an acceptance of 1
would be slower than plain decoding): then it makes no probe, since none could change the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from arbitrage.errors import ConfigError


@runtime_checkable
class TokenProposer(Protocol):
    """A model that proposes the next tokens of a token sequence (greedy), in a shared vocabulary."""

    name: str

    def vocabulary_key(self) -> str:
        """Equal keys mean equal token ids for equal text (speculation needs a shared vocabulary)."""
        ...

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` greedy tokens after ``tokens`` (stopping after an end-of-generation token)."""
        ...


@dataclass(frozen=True, slots=True)
class SpeculationConfig:
    """How a :class:`SpeculationController` chooses ``k``."""

    k_max: int = 6  # most tokens proposed per round (a round evaluates k + 1 tokens in one batch)
    k_start: int = 2  # k of the first rounds, before any cost is measured
    adaptive: bool = True  # False: always k_start (no self-disabling)
    warmup_rounds: int = 4  # rounds at k_start before the controller trusts its measurements
    # while switched off, try k = 1 once after this many plainly decoded tokens; each probe that finds
    # speculation still not paying doubles the wait (up to 16x): a probe costs the proposer a catch-up
    probe_every: int = 48
    decay: float = 0.97  # weight of the past in the running averages (per observation)

    def __post_init__(self) -> None:
        if not 1 <= self.k_start <= self.k_max:
            raise ConfigError(f"k_start must be in 1..k_max ({self.k_max}), got {self.k_start}")
        if self.probe_every <= 0 or self.warmup_rounds < 0:
            raise ConfigError("probe_every must be positive and warmup_rounds non-negative")
        if not 0 < self.decay < 1:
            raise ConfigError(f"decay must be in (0, 1), got {self.decay}")


@dataclass(slots=True)
class SpeculationStats:
    """What speculation did during one call (or a whole solve, summed). Read by traces and reports.

    token acceptance = accepted / proposed; tokens per round = (accepted + rounds) / rounds.
    """

    rounds: int = 0  # batched verifications of proposals
    proposed: int = 0  # Σ tokens proposed
    accepted: int = 0  # Σ proposed tokens the writer kept (its own choice at that position)
    plain_tokens: int = 0  # tokens decoded one at a time (speculation off, k = 0, or an empty round)
    empty_rounds: int = 0  # rounds whose proposer gave nothing to verify (its seconds still counted)
    proposer_seconds: float = 0.0  # Σ seconds the proposer spent (inside the writer's decode seconds)
    verify_seconds: float = 0.0  # Σ seconds of the batched evaluations
    k_used: list[int] = field(default_factory=list)  # k of each round, in order

    def observe_round(self, k: int, accepted: int, proposer_seconds: float, verify_seconds: float) -> None:
        self.rounds += 1
        self.proposed += k
        self.accepted += accepted
        self.proposer_seconds += proposer_seconds
        self.verify_seconds += verify_seconds
        self.k_used.append(k)

    def observe_plain(self) -> None:
        self.plain_tokens += 1

    def observe_empty(self, proposer_seconds: float) -> None:
        self.empty_rounds += 1
        self.proposer_seconds += proposer_seconds

    def add(self, other: SpeculationStats) -> None:
        self.rounds += other.rounds
        self.proposed += other.proposed
        self.accepted += other.accepted
        self.plain_tokens += other.plain_tokens
        self.empty_rounds += other.empty_rounds
        self.proposer_seconds += other.proposer_seconds
        self.verify_seconds += other.verify_seconds
        self.k_used.extend(other.k_used)

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.proposed if self.proposed else None

    def to_dict(self) -> dict[str, object]:
        return {
            "rounds": self.rounds,
            "proposed": self.proposed,
            "accepted": self.accepted,
            "plain_tokens": self.plain_tokens,
            "empty_rounds": self.empty_rounds,
            "proposer_seconds": self.proposer_seconds,
            "verify_seconds": self.verify_seconds,
            "k": list(self.k_used),
        }


@dataclass(frozen=True, slots=True)
class PriorCosts:
    """Costs known before any round runs (from ``bench-costs``), in seconds."""

    decode: float  # the writer's seconds per plainly decoded token, v(1)
    batch_token: float  # the writer's extra seconds per extra batch token: v(n) = decode + (n-1)·this
    proposer: float  # the proposer's seconds per proposed token


class _Average:
    """An exponentially decayed running mean."""

    __slots__ = ("decay", "total", "weight")

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.total = 0.0
        self.weight = 0.0

    def observe(self, value: float, weight: float = 1.0) -> None:
        self.total = self.total * self.decay + value * weight
        self.weight = self.weight * self.decay + weight

    @property
    def value(self) -> float | None:
        return self.total / self.weight if self.weight > 0 else None


class SpeculationController:
    """Chooses ``k`` for each round from measured costs and acceptance (see the module docstring)."""

    def __init__(self, config: SpeculationConfig | None = None, prior: PriorCosts | None = None) -> None:
        self.config = config or SpeculationConfig()
        decay = self.config.decay
        self._verify: dict[int, _Average] = {}  # batch size n -> seconds of evaluating n tokens
        self._proposer = _Average(decay)  # seconds per proposed token
        self._accepted = _Average(decay)  # accepted tokens, per round
        self._stopped = _Average(decay)  # rounds that ended on a rejection (not all k accepted)
        self._rounds = 0
        self._plain = 0  # tokens decoded on their own, observed
        self._since_probe = 0
        self._probe_wait = self.config.probe_every  # current wait between probes (backs off)
        self._probing = False
        self.prior = prior
        if prior is not None:
            self._seed(1, prior.decode)
            self._proposer.observe(prior.proposer, 0.5)

    def _seed(self, n: int, seconds: float) -> None:
        self._verify.setdefault(n, _Average(self.config.decay)).observe(seconds, 0.5)

    # -- observations ------------------------------------------------------------------------------

    def observe_plain(self, seconds: float) -> None:
        """A token decoded on its own took ``seconds``."""
        self._verify.setdefault(1, _Average(self.config.decay)).observe(seconds)
        self._plain += 1
        self._since_probe += 1

    def observe_round(self, k: int, accepted: int, proposer_seconds: float, verify_seconds: float) -> None:
        """A round proposed ``k`` tokens, ``accepted`` of them were kept; what each side took."""
        self._rounds += 1
        self._since_probe = 0
        self._verify.setdefault(k + 1, _Average(self.config.decay)).observe(verify_seconds)
        if k:
            self._proposer.observe(proposer_seconds / k)
        self._observe_outcome(accepted, k)

    def observe_empty(self, k: int, proposer_seconds: float) -> None:
        """A round asked for ``k`` proposals and got none to verify (a text-level proposal that did not
        continue the writer's tokens): the proposer's seconds bought nothing, a rejection of all ``k``.
        The token itself was decoded on its own (:meth:`observe_plain`)."""
        self._rounds += 1
        self._since_probe = 0
        self._proposer.observe(proposer_seconds / k)
        self._observe_outcome(0, k)

    def _observe_outcome(self, accepted: int, k: int) -> None:
        self._accepted.observe(accepted)
        self._stopped.observe(1.0 if accepted < k else 0.0)
        if self._probing:  # a probe: back off while speculation still does not pay
            self._probing = False
            wait = self._probe_wait * 2 if self.best_k() == 0 else self.config.probe_every
            self._probe_wait = min(wait, 16 * self.config.probe_every)

    # -- estimates ---------------------------------------------------------------------------------

    @property
    def alpha(self) -> float | None:
        """Per-token acceptance: the geometric model's estimate from accepted runs cut at k."""
        accepted, stopped = self._accepted.value, self._stopped.value
        if accepted is None or stopped is None:
            return None
        if accepted + stopped <= 0:
            return 0.0
        return accepted / (accepted + stopped)

    def verify_seconds(self, n: int) -> float | None:
        """Estimated seconds of evaluating ``n`` tokens in one batch."""
        known = {size: avg.value for size, avg in self._verify.items() if avg.value is not None}
        if n in known:
            return known[n]
        one = known.get(1)
        larger = sorted(size for size in known if size > 1)
        if one is not None and larger:  # linear through v(1) and the nearest measured batch size
            size = min(larger, key=lambda s: abs(s - n))
            return one + (known[size] - one) * (n - 1) / (size - 1)
        if one is not None and self.prior is not None:
            return one + (n - 1) * self.prior.batch_token
        return None

    def rate(self, k: int, alpha: float | None = None) -> float | None:
        """Expected tokens per second at ``k`` (k = 0: plain decoding); None where unknown.

        ``alpha``: the per-token acceptance to assume (default: the measured one).
        """
        plain = self.verify_seconds(1)
        if k == 0:
            return 1.0 / plain if plain else None
        alpha = self.alpha if alpha is None else alpha
        proposer, verify = self._proposer.value, self.verify_seconds(k + 1)
        if alpha is None or proposer is None or verify is None:
            return None
        tokens = sum(alpha**i for i in range(k + 1))
        return tokens / (k * proposer + verify)

    def best_k(self) -> int:
        """The k with the highest expected rate among those that can be estimated (0 if none beats it)."""
        optimistic = 1.0 if self.alpha is None else None  # no round yet: assume every proposal kept
        rates = {k: self.rate(k, optimistic) for k in range(self.config.k_max + 1)}
        known = {k: r for k, r in rates.items() if r is not None and math.isfinite(r)}
        if 0 not in known:
            return self.config.k_start
        best = max(known, key=lambda k: (known[k], -k))
        if optimistic is not None and best > 0:
            return self.config.k_start  # it could pay: measure the acceptance at k_start
        return best

    def next_k(self) -> int:
        """k for the next round: 0 means decode the next token plainly."""
        cfg = self.config
        if not cfg.adaptive:
            return cfg.k_start
        if self.prior is None and self._plain < 2:
            return 0  # measure plain decoding first: it is what speculation must beat
        if self.prior is None and self._rounds < cfg.warmup_rounds:
            return cfg.k_start
        k = self.best_k()
        if k == 0 and self._since_probe >= self._probe_wait and not self.hopeless():
            self._probing = True
            return 1  # re-measure now and then: acceptance and costs change with the text
        return k

    def hopeless(self) -> bool:
        """Whether speculation cannot pay even if every proposed token were kept, at the costs measured
        so far (every k estimable and slower than plain decoding at acceptance 1). A probe re-measures
        the acceptance, which cannot exceed 1, and costs the proposer a catch-up over the whole text
        since it last ran, so none is made; plain decoding keeps updating ``v(1)``, and when it moves
        enough for a perfect acceptance to pay, probing resumes."""
        plain = self.rate(0)
        if plain is None or self._proposer.value is None:
            return False
        best = [self.rate(k, 1.0) for k in range(1, self.config.k_max + 1)]
        return all(r is not None and r < plain for r in best)


class Speculation:
    """A proposer, its controller and the running stats: what a writer backend speculates with."""

    def __init__(
        self,
        proposer: TokenProposer,
        config: SpeculationConfig | None = None,
        prior: PriorCosts | None = None,
    ) -> None:
        self.proposer = proposer
        self.controller = SpeculationController(config, prior)

    def describe(self) -> str:
        cfg = self.controller.config
        mode = "adaptive" if cfg.adaptive else "fixed"
        return f"speculation({self.proposer.name}, k<={cfg.k_max}, {mode})"
