"""Per-token costs of a draft/target pair: what a model's call costs by what it did (shared vocabulary).

    seconds(model) = decode · decoded tokens + evaluate · evaluated tokens + call · calls

Fitted from a sweep's records (:mod:`arbitrage.evaluation.costs`), measured directly for any pair of
backends (``arbitrage bench-costs``), and read by the ``auto`` policy to project latencies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RoleCosts:
    """Per-token and per-call seconds of one model (read by the predictions and projections)."""

    decode: float  # seconds per decoded token
    evaluate: float  # seconds per token evaluated in a batch (prefill, verification)
    call: float = 0.0  # fixed seconds per call
    # extra seconds per token of a small batch (2-8 tokens after the cache) over decoding one:
    # v(n) = decode + (n - 1) * batch_extra. Measured by bench-costs (None in a fit); speculation reads it
    batch_extra: float | None = None

    def seconds(self, decoded: float, evaluated: float, calls: float) -> float:
        """Predicted seconds of calls that decoded / evaluated this many tokens."""
        return self.decode * decoded + self.evaluate * evaluated + self.call * calls

    def scaled(self, factor: float) -> RoleCosts:
        """Every coefficient times ``factor`` (a faster or slower model of the same shape)."""
        extra = None if self.batch_extra is None else self.batch_extra * factor
        return RoleCosts(self.decode * factor, self.evaluate * factor, self.call * factor, extra)


@dataclass(frozen=True, slots=True)
class CostModel:
    """Costs of a draft/target pair: fitted from records (``source="fit"``) or measured (``"bench"``)."""

    draft: RoleCosts
    target: RoleCosts
    source: str = "fit"  # "fit" (from a sweep's records) or "bench" (measured by bench-costs)
    r2: float | None = None  # fit: coefficient of determination per role is in ``r2_by_role``
    r2_by_role: Mapping[str, float] | None = None
    problems: int = 0  # fit: records used
    machine: str = ""  # bench: where it was measured
    notes: str = ""

    def role(self, name: str) -> RoleCosts:
        """The costs of ``"draft"`` or ``"target"``."""
        if name not in ("draft", "target"):
            raise ConfigError(f"unknown role {name!r} (draft or target)")
        return self.target if name == "target" else self.draft

    def seconds(self, work: Mapping[str, tuple[float, float, float]]) -> float:
        """Predicted model seconds of ``work``: role -> (decoded tokens, evaluated tokens, calls)."""
        return sum(self.role(name).seconds(*counts) for name, counts in work.items())

    @property
    def ratio(self) -> float:
        """Draft decode cost over target decode cost (per token)."""
        return self.draft.decode / self.target.decode if self.target.decode > 0 else math.nan

    @property
    def verify_ratio(self) -> float:
        """The target's batched evaluation cost over its decode cost (per token)."""
        return self.target.evaluate / self.target.decode if self.target.decode > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["verify_ratio"] = self.verify_ratio
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostModel:
        try:
            return cls(
                draft=RoleCosts(**_floats(data["draft"])),
                target=RoleCosts(**_floats(data["target"])),
                source=str(data.get("source", "bench")),
                r2=data.get("r2"),
                r2_by_role=data.get("r2_by_role"),
                problems=int(data.get("problems", 0)),
                machine=str(data.get("machine", "")),
                notes=str(data.get("notes", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a cost model: {exc}") from exc


def _floats(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: float(data[key]) for key in ("decode", "evaluate", "call") if key in data}
    if data.get("batch_extra") is not None:
        out["batch_extra"] = float(data["batch_extra"])
    return out


def read_costs(path: Path) -> CostModel:
    """A cost model from a JSON file (as written by ``bench-costs`` or ``report``); one-line errors."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"cost file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read cost file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a cost model (a JSON object)")
    return CostModel.from_dict(data)


def costs_cache_path(home: Path, draft: str, target: str) -> Path:
    """Where ``bench-costs`` keeps the costs of a pair on this machine (``$ARBITRAGE_HOME/costs/``)."""
    import re

    def slug(spec: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", spec)[:80]

    return home / "costs" / f"{slug(draft)}__{slug(target)}.json"
