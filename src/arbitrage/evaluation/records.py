"""One evaluation record per problem: what the runner writes, the summary counts and the report resamples.

A :class:`ProblemRecord` is one JSON line of ``records.jsonl``. Its keys on disk are its field names
(unchanged since the first sweeps), and :meth:`ProblemRecord.from_dict` reads every older line: a key
a line lacks takes the field's default, a key the record does not know is ignored.

A problem whose solve raised an error is *errored* (``error`` set, ``completed`` False): it is neither
right nor wrong. Summaries and reports count it apart, list its id, and take accuracy and latency over
the completed problems only; the runner solves it again when the run is resumed.

Two latencies, two names:

- ``ProblemRecord.latency_seconds``: the **cost** of a solve, Σ measured call seconds (draft + target,
  the target's verifications of draft steps included) plus policy (PRM / router) seconds. Calls
  replayed from a step or score cache add the seconds stored when they first ran, so it is comparable
  between live and replayed runs. Every summary and report latency is built from it.
- ``SolveTrace.wall_latency_seconds`` (:mod:`arbitrage.trace`): the wall clock of one solve less
  diagnostic-only work; a replayed call costs almost nothing there. Stored here as ``wall_seconds``
  (diagnostics included), for information only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RECORDS = "records.jsonl"

# the keys written for an errored problem (nothing was measured): the same lines as always
ERRORED_KEYS = ("id", "dataset", "gold", "error", "correct", "predicted")
# keys written only when not zero (a policy that verifies, prefix keeping), so every other line keeps
# the keys it always had
SPARSE_KEYS = (
    "kept_tokens",
    "verify_calls",
    "verify_seconds",
    "verify_prefill_tokens",
    "spec_proposed",
    "spec_accepted",
    "probes",
    "early_escalations",
)


@dataclass(frozen=True, slots=True)
class ProblemRecord:
    """One problem of an evaluation run. Written by the runner, read by the summary, report and CLI.

    Counts are per problem; seconds are summed over the solve's calls.
    """

    id: str  # problem id within its dataset (runner: resume; report: pairs points by it)
    dataset: str  # dataset name
    gold: str  # the reference answer
    error: str | None = None  # why the solve failed ("Type: message"); None: completed (all readers)
    predicted: str | None = None  # answer extracted from the solution (None: none found, or errored)
    correct: bool = False  # graded against ``gold``; meaningless when errored (summary, report)
    grade_error: str | None = None  # why grading could not compare the answers, if it could not
    policy: str = ""  # the policy's description, e.g. "rsd(t=0.9, ...)"
    stop_reason: str | None = None  # why the solve ended (``arbitrage.trace.StopReason``)
    steps: int = 0  # accepted steps of the solution (summary: acceptance denominator)
    draft_steps: int = 0  # of which written by the draft (summary, report: acceptance numerator)
    solution_tokens: int = 0  # tokens of the accepted steps
    draft_kept_tokens: int = 0  # of which written by the draft (token acceptance rate)
    escalations: int = 0  # steps the policy sent to the target
    wasted_escalations: int | None = None  # escalations with Δ ≤ 0; None unless both rewards known
    rewarded_escalations: int = 0  # escalations with both rewards known (waste share denominator)
    target_calls: int = 0  # target step calls (target-call rate numerator)
    draft_generated_tokens: int = 0  # tokens the draft generated, kept or not
    target_generated_tokens: int = 0  # tokens the target generated, kept or not
    draft_seconds: float = 0.0  # Σ measured draft call seconds (prefill + decode), replays included
    target_seconds: float = 0.0  # Σ measured target call seconds (verifications included), replays included
    draft_prefill_tokens: int = 0  # context tokens the draft evaluated (not reused from its KV cache)
    target_prefill_tokens: int = 0  # same for the target's step calls (verifications: verify_prefill_tokens)
    policy_seconds: float = 0.0  # PRM / router seconds inside the latency (replayed scores included)
    wall_seconds: float = 0.0  # wall clock of the solve, diagnostics included (information only)
    # cost latency, seconds: draft_seconds + target_seconds + policy_seconds (see the module docstring);
    # the summary's and the report's latencies
    latency_seconds: float = 0.0
    replayed_calls: int = 0  # model calls replayed from a step cache (their stored seconds summed)
    live_calls: int = 0  # model calls measured in this run
    replayed_prm_calls: int = 0  # PRM calls replayed from a score cache
    live_prm_calls: int = 0  # PRM calls measured in this run
    kept_tokens: int = 0  # target decode tokens saved by keeping verified draft prefixes (prefix keeping)
    verify_calls: int = 0  # target verifications of draft steps (their seconds are in target_seconds)
    verify_seconds: float = 0.0  # Σ seconds of those verifications
    verify_prefill_tokens: int = 0  # tokens they evaluated (context the target had not seen, and the step)
    spec_proposed: int = 0  # tokens the draft proposed inside the target's steps (token-level speculation)
    spec_accepted: int = 0  # of which the target kept (its own greedy choice there)
    probes: int = 0  # steps whose first draft tokens a policy decided after (early escalation)
    # escalations decided before the draft's whole step: before it wrote, or at its probe
    early_escalations: int = 0
    route: str = ""  # one letter per accepted step: "D" draft, "T" target
    solution: str = ""  # the steps joined by the run's separator

    @property
    def completed(self) -> bool:
        """The solve finished (right or wrong); False for an errored problem."""
        return self.error is None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProblemRecord:
        """A record from one JSON line, old or new: missing keys take their defaults, unknown are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["id"] = str(values.get("id", ""))
        values.setdefault("dataset", "")
        values["gold"] = str(values.get("gold", ""))
        values["correct"] = bool(values.get("correct") or False)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON line (an errored problem keeps the short form it always had)."""
        data = dataclasses.asdict(self)
        if not self.completed:
            return {key: data[key] for key in ERRORED_KEYS}
        return {key: value for key, value in data.items() if key not in SPARSE_KEYS or value}


def as_record(record: ProblemRecord | Mapping[str, Any]) -> ProblemRecord:
    """A record, or a JSON line read back as one."""
    return record if isinstance(record, ProblemRecord) else ProblemRecord.from_dict(record)


def read_records(path: Path) -> list[ProblemRecord]:
    """Every complete line of a ``records.jsonl`` (a line cut by a kill is skipped with a warning)."""
    records = []
    if path.is_file():
        with path.open() as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(ProblemRecord.from_dict(json.loads(line)))
                except json.JSONDecodeError:  # a line cut by a kill: drop it, the problem reruns
                    logger.warning("%s:%d is incomplete; that problem will run again", path, lineno)
    return records


def write_records(path: Path, records: Iterable[ProblemRecord]) -> None:
    """Write records as JSON lines, replacing ``path``."""
    with path.open("w") as fh:
        for record in records:
            fh.write(json.dumps(record.to_dict()) + "\n")
