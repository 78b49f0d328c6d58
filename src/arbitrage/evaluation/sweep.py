"""Sweeps: one grid of policy points over the same problems, sharing models and a step cache.

A grid is written as ``;``-separated points, each ``policy`` or ``policy:param=v1,v2,...``::

    draft; target; random:p=0.25,0.5,0.75; rsd:threshold=0.5,0.7,0.9; oracle:tau=0,0.1

Each point runs through the resumable evaluation runner into ``OUT/<point>/``; ``OUT/sweep.json``
collects every point's summary for ``arbitrage report``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbitrage.backends.base import Generator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ConfigError
from arbitrage.evaluation.datasets import Problem
from arbitrage.evaluation.runner import run_eval
from arbitrage.evaluation.summary import EvalSummary
from arbitrage.policies import PolicyOptions, build_policy

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One policy setting of a sweep."""

    policy: str  # policy name, e.g. "rsd"
    param: str | None = None  # the PolicyOptions field varied, e.g. "threshold"
    value: float | None = None

    @property
    def slug(self) -> str:
        return self.policy if self.param is None else f"{self.policy}_{self.param}={self.value:g}"


def parse_points(spec: str) -> list[SweepPoint]:
    """Parse a grid spec (see the module docstring) into points, validating names and numbers."""
    fields = {f.name for f in dataclasses.fields(PolicyOptions)}
    points: list[SweepPoint] = []
    for chunk in filter(None, (c.strip() for c in spec.split(";"))):
        name, _, rest = chunk.partition(":")
        name = name.strip()
        if not rest:
            points.append(SweepPoint(name))
            continue
        match = re.fullmatch(r"\s*(\w+)\s*=\s*([-0-9.eE,\s]+)", rest)
        if not match:
            raise ConfigError(f"Bad sweep point {chunk!r}: expected policy:param=v1,v2,...")
        param = match.group(1)
        if param not in fields:
            raise ConfigError(
                f"Unknown policy parameter {param!r} in {chunk!r} (known: {', '.join(sorted(fields))})"
            )
        try:
            values = [float(v) for v in match.group(2).split(",") if v.strip()]
        except ValueError as exc:
            raise ConfigError(f"Bad number in sweep point {chunk!r}") from exc
        points.extend(SweepPoint(name, param, v) for v in values)
    if not points:
        raise ConfigError("The sweep has no points")
    return points


def run_sweep(
    problems: Sequence[Problem],
    draft: Generator,
    target: Generator,
    points: Sequence[SweepPoint],
    out: Path,
    engine_config: EngineConfig,
    base_options: PolicyOptions,
    run_config: dict[str, Any],
    concurrency: int = 1,
) -> list[tuple[SweepPoint, EvalSummary]]:
    """Run every point (resumably) and write ``OUT/sweep.json``."""
    policies = []
    for point in points:  # build all first: a bad parameter fails before hours of work
        options = base_options
        if point.param is not None:
            field_type = type(getattr(base_options, point.param))
            value: Any = int(point.value) if field_type is int and point.value is not None else point.value
            options = dataclasses.replace(base_options, **{point.param: value})
        policies.append(build_policy(point.policy, options))
    results = []
    for i, (point, policy) in enumerate(zip(points, policies, strict=True), start=1):
        logger.info("== sweep point %d/%d: %s", i, len(points), policy.name)
        engine = Engine(draft, target, policy, engine_config)
        config = {**run_config, "policy": policy.name}
        summary = run_eval(problems, engine, out / point.slug, config, concurrency=concurrency)
        results.append((point, summary))
        _write(out, results)
    return results


def _write(out: Path, results: list[tuple[SweepPoint, EvalSummary]]) -> None:
    data = [
        {"point": point.slug, "policy_name": point.policy, "param": point.param, "value": point.value,
         **summary.to_dict()}
        for point, summary in results
    ]  # fmt: skip
    (out / "sweep.json").write_text(json.dumps(data, indent=2))
