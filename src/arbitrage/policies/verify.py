"""The ``verify`` policy: the target verifies every draft step; escalate when its view says so.

No training. For each draft step the target evaluates the step in one batched pass
(:meth:`~arbitrage.backends.base.Verifier.verify_step`) and the policy reads one *verification score*
from that view. Every score is oriented so that larger means more reason to escalate, and the policy
escalates iff ``score > τ``:

- ``gsi``: ``−(mean log π_target − mean log π_draft)``, each mean per token of the step in the model's
  own tokenisation: the tilted score of GSI (arXiv 2506.04118) per token, negated.
- ``target_nll`` (the default): ``−mean log π_target`` per verified token.
- ``target_min_nll``: ``−min log π_target`` over the verified tokens.
- ``disagree``: share of verified tokens that are not the target's greedy choice.
- ``divergence``: ``1 − first_divergence / n`` (0 when the target agrees throughout).

τ is given (``threshold``), or chosen for a share of steps to escalate (``target_rate``) from a
calibration table: score name -> ``[(quantile, value), ...]`` of the score measured on collected step
pairs (:func:`build_calibration`, ``arbitrage calibrate-verify``), shipped as package data
(``arbitrage/data/verify_calibration.json``) or given with the ``calibration`` option.

An escalated step keeps the draft tokens the target agrees with (the engine's prefix keeping), so a
verification is not wasted when the policy escalates.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from arbitrage.backends.base import StepOutput, Verification
from arbitrage.errors import ConfigError, PolicyOptionError
from arbitrage.policies.base import StepView
from arbitrage.policies.options import VERIFY_SCORES, VerifyOptions
from arbitrage.trace import Decision

CALIBRATION_FILE = "verify_calibration.json"  # the packaged table, in the arbitrage.data package
CALIBRATION_QUANTILES = tuple(i / 100 for i in range(101))  # quantiles a built table holds


@dataclass(frozen=True, slots=True)
class VerificationStats:
    """The figures of one verification the scores are computed from (from a live verification or from
    a collected step pair's columns)."""

    mean_logprob: float  # mean log π_target per verified token (nats)
    min_logprob: float  # lowest log π_target of a verified token (nats)
    agreement: float  # share of verified tokens that are the target's greedy choice, in [0, 1]
    first_divergence: int | None  # index of the first token the target would not choose; None: none
    tokens: int  # verified tokens n
    draft_mean_logprob: float  # mean log π_draft per token of the draft's own step (nats)

    @classmethod
    def of(cls, verification: Verification, draft: StepOutput) -> VerificationStats:
        logprobs = draft.token_logprobs
        return cls(
            mean_logprob=verification.mean_logprob,
            min_logprob=verification.min_logprob,
            agreement=verification.agreement,
            first_divergence=verification.first_divergence,
            tokens=verification.n,
            draft_mean_logprob=math.fsum(logprobs) / len(logprobs) if logprobs else 0.0,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> VerificationStats | None:
        """From a collected step pair (columns ``t_mean_logprob``, ``t_min_logprob``, ``t_agreement``,
        ``t_first_divergence`` (null or negative: no divergence), ``t_tokens``, ``draft_logprobs``);
        None for a row collected without the target's verification."""
        if row.get("t_mean_logprob") is None or row.get("t_tokens") is None:
            return None
        divergence = row.get("t_first_divergence")
        logprobs = list(row.get("draft_logprobs") or ())
        return cls(
            mean_logprob=float(row["t_mean_logprob"]),
            min_logprob=float(row.get("t_min_logprob") or 0.0),
            agreement=float(row.get("t_agreement", 1.0) if row.get("t_agreement") is not None else 1.0),
            first_divergence=None if divergence is None or divergence < 0 else int(divergence),
            tokens=int(row["t_tokens"]),
            draft_mean_logprob=math.fsum(logprobs) / len(logprobs) if logprobs else 0.0,
        )


def verification_score(name: str, stats: VerificationStats) -> float:
    """Score ``name`` of a verification (larger: more reason to escalate); see the module docstring."""
    if name == "gsi":
        return -(stats.mean_logprob - stats.draft_mean_logprob)
    if name == "target_nll":
        return -stats.mean_logprob
    if name == "target_min_nll":
        return -stats.min_logprob
    if name == "disagree":
        return 1.0 - stats.agreement
    if name == "divergence":
        if stats.first_divergence is None or stats.tokens <= 0:
            return 0.0
        return 1.0 - min(stats.first_divergence, stats.tokens) / stats.tokens
    raise PolicyOptionError(
        f"Unknown verification {{score}} {name!r} (known: {', '.join(VERIFY_SCORES)})", "score"
    )


class VerifyPolicy:
    """Escalate when the target's verification score of the draft step exceeds ``tau``."""

    skip_draft = False

    def __init__(self, score: str, tau: float, *, target_rate: float | None = None) -> None:
        VerifyOptions(score=score, threshold=tau)  # validates
        self.score = score
        self.tau = tau
        self.target_rate = target_rate  # the rate τ was chosen for, when it came from a calibration table

    @property
    def name(self) -> str:
        rate = f",rate={self.target_rate:g}" if self.target_rate is not None else ""
        return f"verify({self.score},tau={self.tau:.4g}{rate})"

    def decide(self, view: StepView) -> Decision:
        verification = view.verify_target()
        score = verification_score(self.score, VerificationStats.of(verification, view.draft))
        escalate = score > self.tau
        return Decision(
            escalate=escalate,
            score=score,
            threshold=self.tau,
            reason=f"{self.score} {score:.3f} {'>' if escalate else '≤'} τ {self.tau:.3f}",
            info={
                "score": self.score,
                "agreement": verification.agreement,
                "first_divergence": verification.first_divergence,
            },
        )


# -- calibration: τ for a target escalation rate -------------------------------------------------------

Calibration = dict[str, list[tuple[float, float]]]  # score name -> [(quantile, value)], quantiles rising


def build_calibration(
    rows: Iterable[Mapping[str, Any]], quantiles: Sequence[float] = CALIBRATION_QUANTILES
) -> Calibration:
    """The calibration table of every score over collected step pairs (rows without the target's
    verification are skipped; ConfigError when none has it)."""
    stats = [s for s in map(VerificationStats.from_row, rows) if s is not None]
    if not stats:
        raise ConfigError(
            "No step pair has the target's verification (t_mean_logprob, ...): collect with a version "
            "that verifies"
        )
    table: Calibration = {}
    for name in VERIFY_SCORES:
        values = sorted(verification_score(name, s) for s in stats)
        table[name] = [(q, quantile(values, q)) for q in quantiles]
    return table


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def tau_for_rate(table: Sequence[Sequence[float]], target_rate: float) -> float:
    """τ such that about ``target_rate`` of the calibration steps score above it: the score's
    ``1 − target_rate`` quantile, interpolated linearly between the table's rows."""
    points = sorted((float(q), float(v)) for q, v in table)
    if not points:
        raise ConfigError("The calibration table is empty")
    wanted = 1.0 - target_rate
    if wanted <= points[0][0]:
        return points[0][1]
    for (q0, v0), (q1, v1) in itertools.pairwise(points):
        if wanted <= q1:
            return v0 if q1 == q0 else v0 + (v1 - v0) * (wanted - q0) / (q1 - q0)
    return points[-1][1]


def load_calibration(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """The calibration table at ``path``, or the packaged one (``path`` None), and where it came from."""
    if path is not None:
        source = Path(path)
        if not source.is_file():
            raise PolicyOptionError(f"No calibration table at {{calibration}} {source}", "calibration")
        text = source.read_text()
        where = str(source)
    else:
        packaged = resources.files("arbitrage.data").joinpath(CALIBRATION_FILE)
        if not packaged.is_file():
            raise PolicyOptionError(
                "No calibration table is installed for the verify policy's {target_rate}: give "
                "{threshold} τ, or {calibration} PATH from `arbitrage calibrate-verify`",
                "target_rate",
                "threshold",
                "calibration",
            )
        text = packaged.read_text()
        where = f"arbitrage/data/{CALIBRATION_FILE}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not a calibration table (bad JSON: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} is not a calibration table (expected score name -> quantiles)")
    return data, where


def build_verify_policy(options: VerifyOptions) -> VerifyPolicy:
    """The policy for ``options``: τ given, or from the calibration table for ``target_rate``."""
    if options.threshold is not None:
        return VerifyPolicy(options.score, options.threshold)
    assert options.target_rate is not None  # validated: exactly one is set
    table, where = load_calibration(options.calibration)
    if not table.get(options.score):
        raise PolicyOptionError(
            f"The calibration table {where} has no row for score {options.score!r}: give {{threshold}} τ "
            "instead",
            "threshold",
        )
    tau = tau_for_rate(table[options.score], options.target_rate)
    return VerifyPolicy(options.score, tau, target_rate=options.target_rate)


def write_calibration(table: Calibration, path: Path) -> None:
    """Write a calibration table as JSON (score name -> [[quantile, value], ...])."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {name: [[q, v] for q, v in rows] for name, rows in table.items()}
    path.write_text(json.dumps(data, indent=1) + "\n")
