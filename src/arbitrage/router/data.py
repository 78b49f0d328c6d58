"""Oracle-labelled step pairs: the rows `arbitrage collect` writes and routers train on.

One row per (question, step index): from the same prefix the draft wrote ``z_d`` and the target wrote
``z_t`` (``k`` target samples optional), the PRM scored both, and ``Δ = s_t − s_d`` (``s_t`` is the
mean over target samples) gives the oracle label ``y = 1[Δ > 0]``. Rows live in Parquet shards
(``part-00000.parquet``, ...) in one folder, appended and never rewritten.
"""

from __future__ import annotations

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


def read_pairs(folder: Path) -> list[dict[str, Any]]:
    """All rows of a collection folder (or a single Parquet file), as dicts."""
    files = [folder] if folder.is_file() else sorted(folder.glob("part-*.parquet"))
    rows: list[dict[str, Any]] = []
    for f in files:
        rows.extend(pq.read_table(f, schema=SCHEMA).to_pylist())
    return rows
