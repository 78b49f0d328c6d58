"""The ``early`` policy: escalate before the draft has paid for a whole step it would throw away.

An escalation that first pays for the draft's whole step, its verification and then the target's
rewrite cannot beat the target alone where the draft costs most of a target decode per token (issue 26's
measurements). ``early`` takes its one decision at an earlier point of the step (the engine's
:class:`~arbitrage.policies.base.EarlyDecisions`):

- ``probe_tokens`` = 0, **before the draft writes**: from the context alone, the draft's confidence at
  the last step (the token logprobs of its proposal there; STEER's signal, arXiv 2511.06190). Escalating
  has the target write the whole step; otherwise the draft writes it and it is accepted as written. The
  first step has no evidence: the draft writes it, unless ``target_steps`` gives it to the target.
- ``probe_tokens`` = m ≥ 1, **after the draft's first m tokens** (the *probe*; the whole step if it ends
  sooner). A verification score has the target verify the probe in one batch; a draft score reads the
  draft's own confidence on it (no target call). Escalating has the target continue from the probe's
  agreed prefix (the engine's prefix keeping: nothing it agreed with is decoded again); otherwise the
  draft finishes its step, which is then accepted (``decide`` accepts: the probe was the decision).

Every score is oriented so that larger means more reason to escalate, and the policy escalates iff
``score > τ``:

- the verification scores of :mod:`arbitrage.policies.verify` over the probe's tokens; the default,
  ``target_min_nll`` (``−min log π_target``), is the *first strong disagreement*: some probe token the
  target finds unlikely;
- ``draft_nll`` / ``draft_max_nll`` / ``draft_entropy``: the draft's mean / worst token surprise, or its
  mean entropy, over the probe's tokens (m ≥ 1) or its proposal for the last step (m = 0).

``target_steps`` = n > 0 has the target write the first n steps of every answer before any rule is
asked (the opening step, which sets the plan, is where the target's lead over the draft is largest).

τ is given (``threshold``) or chosen for a share of steps to escalate (``target_rate``) from a
calibration table measured on collected step pairs for each m (:func:`build_early_calibration`, shipped
as ``arbitrage/data/early_calibration.json``, rebuilt by ``benchmarks/early_escalation.py``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError, PolicyOptionError
from arbitrage.policies.base import ContextView, DraftConfidence, StepView
from arbitrage.policies.basic import step_draw
from arbitrage.policies.options import DRAFT_SCORES, RANDOM_SCORE, VERIFY_SCORES, EarlyOptions
from arbitrage.policies.verify import (
    CALIBRATION_QUANTILES,
    VerificationStats,
    quantile,
    tau_for_rate,
    verification_score,
)
from arbitrage.trace import Decision, DecisionPoint

CALIBRATION_FILE = "early_calibration.json"  # the packaged table, in the arbitrage.data package
CALIBRATED_PROBES = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # the m a built table holds


def draft_score(name: str, confidence: DraftConfidence) -> float:
    """Draft score ``name`` of the draft's confidence on some tokens (larger: more reason to escalate)."""
    if name == "draft_nll":
        return confidence.mean_nll
    if name == "draft_max_nll":
        return confidence.max_nll
    if name == "draft_entropy":
        return confidence.mean_entropy
    raise PolicyOptionError(f"Unknown draft {{score}} {name!r} (known: {', '.join(DRAFT_SCORES)})", "score")


class EarlyPolicy:
    """Escalate at the probe (or before the draft writes) when ``score > tau`` (see the module docstring)."""

    skip_draft = False

    def __init__(
        self,
        score: str,
        tau: float,
        probe_tokens: int,
        *,
        target_rate: float | None = None,
        target_steps: int = 0,
    ) -> None:
        EarlyOptions(probe_tokens=probe_tokens, score=score, threshold=tau, target_steps=target_steps)
        self.score = score
        self.tau = tau
        self._probe_tokens = probe_tokens
        self.target_rate = target_rate  # the rate τ was chosen for, when it came from a calibration table
        self.target_steps = target_steps  # the target writes this many opening steps, before any rule

    @property
    def probe_tokens(self) -> int:
        return self._probe_tokens

    @property
    def name(self) -> str:
        rate = f",rate={self.target_rate:g}" if self.target_rate is not None else ""
        first = f",target_steps={self.target_steps}" if self.target_steps else ""
        return f"early(m={self._probe_tokens},{self.score},tau={self.tau:.4g}{rate}{first})"

    def _against_tau(
        self,
        score: float,
        label: str,
        on: str,
        verdicts: tuple[str, str],
        info: dict[str, Any],
        point: DecisionPoint,
    ) -> Decision:
        """Escalate iff ``score`` > τ; the reason names the score, its evidence (``on``) and the verdict
        (``verdicts``: escalated, not escalated)."""
        escalate = score > self.tau
        return Decision(
            escalate=escalate,
            score=score,
            threshold=self.tau,
            reason=f"{label} {score:.3f} {'>' if escalate else '≤'} τ {self.tau:.3f}{on}: "
            f"{verdicts[0] if escalate else verdicts[1]}",
            info=info,
            point=point,
        )  # fmt: skip

    def _random(self, question: str, index: int, point: DecisionPoint, info: dict[str, Any]) -> Decision:
        """The control: escalate iff 1 − draw > τ, the draw the random policy makes for this step."""
        score = 1.0 - step_draw(0, question, index)
        return self._against_tau(score, "random 1 − draw", "", ("the target writes", "the draft writes"),
                                 {**info, "score": RANDOM_SCORE}, point)  # fmt: skip

    def before_draft(self, view: ContextView) -> Decision | None:
        index = len(view.history)
        if index < self.target_steps:
            return Decision(
                escalate=True,
                reason=f"step {index + 1} of the {self.target_steps} the target writes first: the target "
                "writes the step",
                info={"probe_tokens": self._probe_tokens, "target_steps": self.target_steps},
                point="before_draft",
            )
        if self._probe_tokens > 0:
            return None  # this policy decides at the probe
        if self.score == RANDOM_SCORE:
            return self._random(view.question, index, "before_draft", {"probe_tokens": 0})
        confidence = view.last_step_confidence()
        if confidence is None:
            return Decision(
                escalate=False,
                reason="no evidence (the first step, or a draft that cannot read the last one): the draft "
                "writes the step",
                info={"probe_tokens": 0},
                point="before_draft",
            )
        return self._against_tau(
            draft_score(self.score, confidence), self.score, f" on {confidence.source}",
            ("the target writes the step", "the draft writes the step"),
            {"score": self.score, "probe_tokens": 0, "evidence": confidence.source}, "before_draft",
        )  # fmt: skip

    def after_probe(self, view: StepView) -> Decision:
        written = view.draft.tokens
        info: dict[str, Any] = {"score": self.score, "probe_tokens": self._probe_tokens, "written": written,
                                "whole_step": not view.partial}  # fmt: skip
        if self.score == RANDOM_SCORE:
            return self._random(view.question, len(view.history), "probe", info)
        if self.score in DRAFT_SCORES:
            score = draft_score(self.score, DraftConfidence.of(view.draft, "the draft's probe"))
            agreed = None
        else:
            verification = view.verify_target()
            score = verification_score(self.score, VerificationStats.of(verification, view.draft))
            divergence = verification.first_divergence
            agreed = verification.n if divergence is None else min(divergence, verification.n)
            info.update(agreed=agreed, verified=verification.n, first_divergence=divergence)
        kept = f" from the {agreed} agreed tokens" if agreed is not None else ""
        accepted = "the draft goes on" if view.partial else "the step is accepted"
        verdicts = (f"the target continues{kept}", accepted)
        return self._against_tau(score, self.score, f" on the first {written} draft tokens", verdicts, info,
                                 "probe")  # fmt: skip

    def decide(self, view: StepView) -> Decision:
        """Accept the step: the decision was taken at the earlier point (its reason is repeated)."""
        why = view.earlier[-1].reason if view.earlier else "no earlier decision"
        return Decision(escalate=False, reason=f"accepted: {why}", info={"probe_tokens": self._probe_tokens})


# -- calibration: τ for a target escalation rate, per probe length ------------------------------------

EarlyCalibration = dict[str, dict[str, list[tuple[float, float]]]]  # m -> score -> [(quantile, value)]


def probe_scores(row: Mapping[str, Any], m: int, previous: Mapping[str, Any] | None) -> dict[str, float]:
    """Every early score a collected step pair gives at probe length ``m`` (empty where it gives none).

    m ≥ 1: the verification scores over the first ``min(m, t_tokens)`` verified tokens (``t_logprobs``,
    ``t_first_divergence``; the agreement of those tokens is not collected, so no ``disagree``) and the
    draft scores over the draft's first ``min(m, draft_tokens)`` tokens. m = 0: the draft scores of
    ``previous`` (the pair of the question's step before, None for a first step).
    """
    if m == 0:
        if previous is None:
            return {}
        return _draft_scores(previous, None)
    scores = _draft_scores(row, m)
    t_logprobs = [float(x) for x in row.get("t_logprobs") or ()]
    if not t_logprobs:
        return scores
    n = min(m, len(t_logprobs))
    head = t_logprobs[:n]
    draft_head = [float(x) for x in (row.get("draft_logprobs") or ())[:n]]
    divergence = row.get("t_first_divergence")
    first = None if divergence is None or divergence < 0 else int(divergence)
    stats = VerificationStats(
        mean_logprob=math.fsum(head) / n,
        min_logprob=min(head),
        agreement=math.nan,  # not collected per token
        first_divergence=first if first is not None and first < n else (None if first is None else n),
        tokens=n,
        draft_mean_logprob=math.fsum(draft_head) / len(draft_head) if draft_head else 0.0,
    )
    for name in VERIFY_SCORES:
        if name != "disagree":
            scores[name] = verification_score(name, stats)
    return scores


def _draft_scores(row: Mapping[str, Any], m: int | None) -> dict[str, float]:
    logprobs = tuple(float(x) for x in (row.get("draft_logprobs") or ()))
    entropies = tuple(float(x) for x in (row.get("draft_entropies") or ()))
    if not logprobs:
        return {}
    if m is not None:
        logprobs, entropies = logprobs[:m], entropies[:m]
    confidence = DraftConfidence(logprobs, entropies, "collected")
    return {name: draft_score(name, confidence) for name in DRAFT_SCORES}


def ordered_steps(
    rows: Iterable[Mapping[str, Any]],
) -> list[tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    """Each collected step pair with the pair of its question's previous step (None for a first step),
    questions in order of appearance, steps by ``step_index``."""
    by_question: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_question[str(row.get("question_id"))].append(row)
    out: list[tuple[Mapping[str, Any], Mapping[str, Any] | None]] = []
    for steps in by_question.values():
        steps.sort(key=lambda r: int(r.get("step_index") or 0))
        previous: Mapping[str, Any] | None = None
        for row in steps:
            before = (
                previous
                if previous is not None
                and int(previous.get("step_index") or 0) == int(row.get("step_index") or 0) - 1
                else None
            )
            out.append((row, before))
            previous = row
    return out


def build_early_calibration(
    rows: Iterable[Mapping[str, Any]],
    probes: Sequence[int] = CALIBRATED_PROBES,
    quantiles: Sequence[float] = CALIBRATION_QUANTILES,
) -> EarlyCalibration:
    """The calibration table of every early score at every probe length over collected step pairs.

    A step that gives no score at a point (a first step before the draft writes) is never escalated
    there: it enters the quantiles below every scored step, so ``target_rate`` stays a share of *all*
    steps. ConfigError when no pair has what the scores need.
    """
    steps = ordered_steps(rows)
    table: EarlyCalibration = {}
    for m in probes:
        scored = [probe_scores(row, m, previous) for row, previous in steps]
        names = sorted({name for s in scored for name in s})
        per_score: dict[str, list[tuple[float, float]]] = {}
        for name in names:
            values = sorted(s[name] for s in scored if name in s)
            floor = values[0] - 1.0
            values = sorted([floor] * sum(1 for s in scored if name not in s) + values)
            per_score[name] = [(q, quantile(values, q)) for q in quantiles]
        if per_score:
            table[str(m)] = per_score
    if not table:
        raise ConfigError(
            "No step pair has the draft's token logprobs: collect with a version that records them"
        )
    return table


def load_early_calibration(path: str | Path | None) -> tuple[EarlyCalibration, str]:
    """The table at ``path``, or the packaged one (``path`` None), and where it came from."""
    if path is not None:
        source = Path(path)
        if not source.is_file():
            raise PolicyOptionError(f"No calibration table at {{calibration}} {source}", "calibration")
        text, where = source.read_text(), str(source)
    else:
        packaged = resources.files("arbitrage.data").joinpath(CALIBRATION_FILE)
        if not packaged.is_file():
            raise PolicyOptionError(
                "No calibration table is installed for the early policy's {target_rate}: give {threshold} τ, "
                "or {calibration} PATH from benchmarks/early_escalation.py",
                "target_rate",
                "threshold",
                "calibration",
            )
        text, where = packaged.read_text(), f"arbitrage/data/{CALIBRATION_FILE}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not an early calibration table (bad JSON: {exc.msg})") from None
    tables = data.get("tables") if isinstance(data, dict) else None
    quantiles = data.get("quantiles") if isinstance(data, dict) else None
    if not isinstance(tables, dict) or not isinstance(quantiles, list):
        raise ConfigError(
            f"{where} is not an early calibration table (expected 'quantiles' and 'tables': m -> score -> "
            "values)"
        )
    try:
        rows = {
            str(m): {name: list(zip(quantiles, values, strict=True)) for name, values in scores.items()}
            for m, scores in tables.items()
        }
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(
            f"{where} is not an early calibration table (a row does not fit its quantiles)"
        ) from None
    return rows, where


def build_early_policy(options: EarlyOptions) -> EarlyPolicy:
    """The policy for ``options``: τ given, or from the calibration table for ``target_rate``."""
    first = options.target_steps
    if options.threshold is not None:
        return EarlyPolicy(options.score, options.threshold, options.probe_tokens, target_steps=first)
    assert options.target_rate is not None  # validated: exactly one is set
    if options.score == RANDOM_SCORE:  # a uniform draw: τ for a rate needs no table
        return EarlyPolicy(RANDOM_SCORE, 1.0 - options.target_rate, options.probe_tokens,
                           target_rate=options.target_rate, target_steps=first)  # fmt: skip
    tables, where = load_early_calibration(options.calibration)
    rows = (tables.get(str(options.probe_tokens)) or {}).get(options.score)
    if not rows:
        known = ", ".join(sorted(tables, key=int))
        raise PolicyOptionError(
            f"The calibration table {where} has no row for {{probe_tokens}} {options.probe_tokens} and "
            f"{{score}} {options.score!r} (its probe lengths: {known}): give {{threshold}} τ instead",
            "probe_tokens",
            "score",
            "threshold",
        )
    tau = tau_for_rate(rows, options.target_rate)
    return EarlyPolicy(
        options.score, tau, options.probe_tokens, target_rate=options.target_rate, target_steps=first
    )


def write_early_calibration(table: EarlyCalibration, path: Path, source: str) -> None:
    """Write a calibration table as JSON: ``{"source", "quantiles": [q...], "tables": m -> score ->
    [value at each quantile]}`` (values rounded to 5 decimals)."""
    quantiles = sorted({q for scores in table.values() for rows in scores.values() for q, _ in rows})
    tables: dict[str, dict[str, list[float]]] = {}
    for m, scores in table.items():
        tables[m] = {}
        for name, rows in scores.items():
            values = dict(rows)
            if sorted(values) != quantiles:
                raise ConfigError(f"calibration rows of {name!r} at m={m} are not on the table's quantiles")
            tables[m][name] = [round(values[q], 5) for q in quantiles]
    data = {"source": source, "quantiles": quantiles, "tables": tables}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
