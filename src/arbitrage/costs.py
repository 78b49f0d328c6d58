"""Per-token costs of a draft/target pair: what a model's call costs by what it did (shared vocabulary).

    seconds(model) = decode · decoded tokens + evaluate · evaluated tokens + call · calls
                     + verify_evaluate · verified tokens + verify_call · verification calls

(A verification is a call of its own kind, one batched pass over a whole draft step; where a cost model
has no separate verification figures, verified tokens cost ``evaluate`` and verification calls ``call``.)

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
    verify_evaluate: float | None = None  # seconds per token of a step's verification (None: ``evaluate``)
    verify_call: float | None = None  # fixed seconds per verification call (None: ``call``)

    def seconds(
        self, decoded: float, evaluated: float, calls: float, verified: float = 0.0, verify_calls: float = 0.0
    ) -> float:
        """Predicted seconds of calls that decoded / evaluated this many tokens, and of verifications."""
        per_verified = self.evaluate if self.verify_evaluate is None else self.verify_evaluate
        per_verification = self.call if self.verify_call is None else self.verify_call
        return (
            self.decode * decoded
            + self.evaluate * evaluated
            + self.call * calls
            + per_verified * verified
            + per_verification * verify_calls
        )

    def scaled(self, factor: float) -> RoleCosts:
        """Every coefficient times ``factor`` (a faster or slower model of the same shape)."""

        def times(value: float | None) -> float | None:
            return None if value is None else value * factor

        return RoleCosts(
            self.decode * factor,
            self.evaluate * factor,
            self.call * factor,
            times(self.batch_extra),
            times(self.verify_evaluate),
            times(self.verify_call),
        )


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

    def seconds(self, work: Mapping[str, tuple[float, ...]]) -> float:
        """Predicted model seconds of ``work``: role -> (decoded tokens, evaluated tokens, calls[,
        verified tokens, verification calls])."""
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
    for key in ("batch_extra", "verify_evaluate", "verify_call"):
        if data.get(key) is not None:
            out[key] = float(data[key])
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
