"""Oracle-labelled step pairs: the rows `arbitrage collect` writes and routers train on.

One row per (question, step index): from the same prefix the draft wrote ``z_d`` and the target wrote
``z_t`` (``k`` target samples optional), the PRM scored both, and ``Δ = s_t − s_d`` (``s_t`` is the
mean over target samples) gives the oracle label ``y = 1[Δ > 0]``. Rows live in Parquet shards
(``part-00000.parquet``, ...) in one folder, appended and never rewritten.

Optional columns (null where they were not computed, and in shards written before they existed, which
load unchanged):

- the **target's verification of z_d** (``t_*``, ``verify_*``, ``gsi``): the target teacher-forced on
  the draft's step (:class:`arbitrage.backends.base.Verification`), when the target is a verifier;
- **grounded (outcome) labels** (``outcome_*``, ``y_outcome``, ``continuation_*``, ``answers_*``): both
  candidates continued to an answer and graded against the gold answer (``collect --labels outcome``,
  :mod:`arbitrage.labelling.outcome`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True, slots=True)
class StepPair:
    """One oracle-labelled step pair (one Parquet row)."""

    question_id: str  # "<dataset>/<problem id>"
    step_index: int  # 0-based index of the step being decided
    question: str
    context: list[str]  # accepted steps before this one
    history: list[str]  # [step_index] "draft" / "target": who wrote each earlier step
    z_d: str  # the draft's step
    z_t: str  # the target's step (the first sample when k > 1)
    s_d: float  # PRM reward of z_d, in [0, 1]
    s_t: float  # mean PRM reward over the k target samples
    delta: float  # Δ = s_t − s_d
    y: int  # oracle label 1[Δ > 0]
    s_t_samples: list[float]  # [k] reward of each target sample
    draft_logprobs: list[float]  # [draft tokens] log p of each token of z_d
    draft_entropies: list[float]  # [draft tokens] next-token entropy (nats) at each token of z_d
    draft_tokens: int
    target_tokens: int
    draft_finish: str  # "step" | "eos" | "length"
    draft_seconds: float
    target_seconds: float
    prm_seconds: float
    draft_model: str
    target_model: str
    prm: str  # scorer spec
    # -- the target's verification of z_d (None: the target is not a verifier, or an old shard) --
    t_tokens: int | None = None  # n: verified tokens of z_d in the target's vocabulary (step + separator)
    t_logprobs: list[float] | None = None  # [n] the target's log p (nats) of each verified token
    t_mean_logprob: float | None = None  # mean of t_logprobs
    t_min_logprob: float | None = None  # min of t_logprobs
    t_agreement: float | None = None  # share of verified tokens that are the target's greedy choice
    t_first_divergence: int | None = None  # first token the target would not write; None: it writes z_d
    t_end_is_eos: bool | None = None  # the target's greedy choice after z_d ends the answer
    verify_seconds: float | None = None  # wall seconds of the verification call
    verify_prefill_tokens: int | None = None  # tokens the verification evaluated (context + step)
    gsi: float | None = None  # t_mean_logprob − mean(draft_logprobs) (GSI's tilt, per token)
    # -- grounded labels (None: collected with --labels prm, or an old shard) --
    outcome_d: float | None = None  # share of continuations from prefix + z_d whose answer is right
    outcome_t: float | None = None  # same from prefix + z_t
    outcome_advantage: float | None = None  # outcome_t − outcome_d (exactly 0 when z_d == z_t)
    y_outcome: int | None = None  # 1[outcome_advantage > 0]
    continuation_model: str | None = None  # the model that continued both candidates to an answer
    continuations: int | None = None  # k continuations per candidate (0: the step already ends it)
    continuation_seconds: float | None = None  # Σ wall seconds of the continuations of both candidates
    continuation_tokens: int | None = None  # Σ generated tokens of those continuations
    answers_d: list[str | None] | None = None  # [k] final answer of each continuation from z_d
    answers_t: list[str | None] | None = None  # [k] same from z_t


SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("step_index", pa.int32()),
        ("question", pa.string()),
        ("context", pa.list_(pa.string())),
        ("history", pa.list_(pa.string())),
        ("z_d", pa.string()),
        ("z_t", pa.string()),
        ("s_d", pa.float64()),
        ("s_t", pa.float64()),
        ("delta", pa.float64()),
        ("y", pa.int8()),
        ("s_t_samples", pa.list_(pa.float64())),
        ("draft_logprobs", pa.list_(pa.float32())),
        ("draft_entropies", pa.list_(pa.float32())),
        ("draft_tokens", pa.int32()),
        ("target_tokens", pa.int32()),
        ("draft_finish", pa.string()),
        ("draft_seconds", pa.float64()),
        ("target_seconds", pa.float64()),
        ("prm_seconds", pa.float64()),
        ("draft_model", pa.string()),
        ("target_model", pa.string()),
        ("prm", pa.string()),
        ("t_tokens", pa.int32()),
        ("t_logprobs", pa.list_(pa.float32())),
        ("t_mean_logprob", pa.float64()),
        ("t_min_logprob", pa.float64()),
        ("t_agreement", pa.float64()),
        ("t_first_divergence", pa.int32()),
        ("t_end_is_eos", pa.bool_()),
        ("verify_seconds", pa.float64()),
        ("verify_prefill_tokens", pa.int32()),
        ("gsi", pa.float64()),
        ("outcome_d", pa.float64()),
        ("outcome_t", pa.float64()),
        ("outcome_advantage", pa.float64()),
        ("y_outcome", pa.int8()),
        ("continuation_model", pa.string()),
        ("continuations", pa.int32()),
        ("continuation_seconds", pa.float64()),
        ("continuation_tokens", pa.int64()),
        ("answers_d", pa.list_(pa.string())),
        ("answers_t", pa.list_(pa.string())),
    ]
)
assert [f.name for f in fields(StepPair)] == SCHEMA.names


def write_shard(rows: list[StepPair], folder: Path) -> Path:
    """Write rows as the next numbered shard, atomically (temp file, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("part-*.parquet"))
    index = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    path = folder / f"part-{index:05d}.parquet"
    tmp = folder / f".{path.name}.tmp"
    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=SCHEMA)
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def read_pairs(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All rows of a collection folder (or a single Parquet file), as dicts (columns a shard lacks: None)."""
    folder = Path(folder)
    files = [folder] if folder.is_file() else sorted(folder.glob("part-*.parquet"))
    rows: list[dict[str, Any]] = []
    for f in files:
        rows.extend(pq.read_table(f, schema=SCHEMA).to_pylist())
    return rows
