"""Sweeps: one grid of policy points over the same problems, sharing models and a step cache.

A grid is written as ``;``-separated points, each ``policy`` or ``policy:param=v1,v2,...``::

    draft; target; random:p=0.25,0.5,0.75; rsd:threshold=0.5,0.7,0.9; oracle:tau=0,0.1

A point's parameter must be a numeric option of that policy (:mod:`arbitrage.policies.options`); the
options a point does not vary come from the sweep's base values (seed, router path, ...), each policy
taking the ones it has. Each point runs through the resumable evaluation runner into
``OUT/<point>/``; ``OUT/sweep.json`` collects every point's summary for ``arbitrage report``.

A *variant* runs one policy with other fixed options next to its plain points, e.g. two routers in one
sweep: ``router@both:target_rate=0.2,0.4`` takes the options of variant ``both``, defined as
``both: path=runs/routers/both`` (:func:`parse_variant`), on top of the base values. A variant is a
family of its own in the report (``router@both`` next to ``router``), and its points live in
``OUT/router@both_target_rate=0.2/``.

A *label* names every point of one run ``policy@label`` the same way, with no options of its own: a run
with other model flags writes into the same folder as a plain one, e.g. token-level speculation
(``--speculate --label lossless --points target``: ``target@lossless`` next to ``target``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage.backends.base import Generator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ConfigError
from arbitrage.evaluation.datasets import Problem
from arbitrage.evaluation.runner import run_eval
from arbitrage.evaluation.summary import EvalSummary
from arbitrage.policies import RoutingPolicy, build_policy, policy_entry, policy_options
from arbitrage.policies.options import option_types

if TYPE_CHECKING:
    from arbitrage.prm.base import StepScorer

logger = logging.getLogger(__name__)

SINGLE_MODEL = ("draft", "target")  # policies whose every step one model writes: the baselines


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One policy setting of a sweep."""

    policy: str  # policy name, e.g. "rsd"
    param: str | None = None  # the option of the policy varied, e.g. "threshold"
    value: float | None = None  # its value at this point
    variant: str | None = None  # a named set of fixed options (see parse_variant), e.g. "both"

    @property
    def family(self) -> str:
        """The report's family of the point: the policy, or ``policy@variant``."""
        return self.policy if self.variant is None else f"{self.policy}@{self.variant}"

    @property
    def slug(self) -> str:
        return self.family if self.param is None else f"{self.family}_{self.param}={self.value:g}"


_LABEL = r"[A-Za-z0-9][A-Za-z0-9_-]*"


def parse_points(spec: str) -> list[SweepPoint]:
    """Parse a grid spec (see the module docstring) into points, validating names and numbers."""
    points: list[SweepPoint] = []
    for chunk in filter(None, (c.strip() for c in spec.split(";"))):
        head, _, rest = chunk.partition(":")
        name, at, variant = (part.strip() for part in head.partition("@"))
        if at and not re.fullmatch(_LABEL, variant):
            raise ConfigError(f"Bad variant name {variant!r} in {chunk!r}: letters, digits, '_' and '-'")
        label = variant if at else None
        numeric = _numeric_options(name)
        if not rest:
            points.append(SweepPoint(name, variant=label))
            continue
        match = re.fullmatch(r"\s*(\w+)\s*=\s*([-0-9.eE,\s]+)", rest)
        if not match:
            raise ConfigError(f"Bad sweep point {chunk!r}: expected policy:param=v1,v2,...")
        param = match.group(1)
        if param not in numeric:
            raise ConfigError(
                f"Unknown {name} parameter {param!r} in {chunk!r} "
                f"(its numeric options: {', '.join(numeric) or 'none'})"
            )
        try:
            values = [float(v) for v in match.group(2).split(",") if v.strip()]
        except ValueError as exc:
            raise ConfigError(f"Bad number in sweep point {chunk!r}") from exc
        points.extend(SweepPoint(name, param, v, label) for v in values)
    if not points:
        raise ConfigError("The sweep has no points")
    slugs = [p.slug for p in points]
    twice = sorted({s for s in slugs if slugs.count(s) > 1})
    if twice:
        raise ConfigError(f"Sweep point {twice[0]} is given twice (give a variant a name: policy@name)")
    return points


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """Parse ``name: key=value, key=value`` into the variant's name and its options (strings, coerced to
    each option's type when a point uses them), e.g. ``both: path=runs/routers/both``."""
    name, colon, rest = spec.partition(":")
    name = name.strip()
    if not colon or not re.fullmatch(_LABEL, name):
        raise ConfigError(f"Bad variant {spec!r}: expected NAME: key=value, key=value")
    values: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in rest.split(","))):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not re.fullmatch(r"\w+", key) or not value:
            raise ConfigError(f"Bad option {item!r} in variant {spec!r}: expected key=value")
        values[key] = value
    if not values:
        raise ConfigError(f"Variant {name!r} sets no options: expected NAME: key=value, key=value")
    return name, values


def label_points(
    points: Sequence[SweepPoint], variants: Mapping[str, dict[str, str]], label: str
) -> tuple[list[SweepPoint], dict[str, dict[str, str]]]:
    """Every point as ``policy@label`` (a variant with no options of its own), for a run whose model flags
    differ from a plain run's in the same folder (``--speculate --label lossless``: ``target@lossless``)."""
    if not re.fullmatch(_LABEL, label):
        raise ConfigError(f"Bad label {label!r}: letters, digits, '_' and '-'")
    named = sorted({p.variant for p in points if p.variant is not None})
    if named:
        raise ConfigError(f"A labelled sweep's points take no variant (found @{named[0]})")
    if label in variants:
        raise ConfigError(f"Label {label!r} is also a variant's name")
    labelled = [SweepPoint(p.policy, p.param, p.value, label) for p in points]
    return labelled, {**variants, label: {}}


def _numeric_options(policy: str) -> list[str]:
    """The options of ``policy`` a sweep may vary (numbers)."""
    types = option_types(policy_entry(policy).options)
    return [name for name, kind in types.items() if kind in (int, float, float | None, int | None)]


def point_options(
    point: SweepPoint, base: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]] | None = None
) -> Any:
    """The validated options of ``point``: the ``base`` values its policy has, its variant's options
    (every one must be an option of the policy), and the point's value."""
    fields = option_types(policy_entry(point.policy).options)
    values = {k: v for k, v in base.items() if k in fields}
    if point.variant is not None:
        fixed = (variants or {}).get(point.variant)
        if fixed is None:
            raise ConfigError(
                f"Sweep point {point.slug} uses variant {point.variant!r}, which no variant defines "
                f"(--variant '{point.variant}: key=value')"
            )
        unknown = sorted(set(fixed) - set(fields))
        if unknown:
            raise ConfigError(
                f"Variant {point.variant!r} sets {unknown[0]!r}, not an option of the {point.policy} policy "
                f"(its options: {', '.join(fields) or 'none'})"
            )
        values.update(fixed)
    if point.param is not None:
        values[point.param] = point.value
    return policy_options(point.policy, values)


def sweep_policies(
    points: Sequence[SweepPoint],
    base: Mapping[str, Any],
    scorer: StepScorer | None = None,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[SweepPoint, RoutingPolicy]]:
    """Build every point's policy (all first: a bad parameter fails before hours of work)."""
    return [
        (point, build_policy(point.policy, point_options(point, base, variants), scorer=scorer))
        for point in points
    ]


def run_sweep(
    problems: Sequence[Problem],
    draft: Generator,
    target: Generator,
    points: Sequence[tuple[SweepPoint, RoutingPolicy]],
    out: Path,
    engine_config: EngineConfig,
    run_config: dict[str, Any],
    concurrency: int = 1,
) -> list[tuple[SweepPoint, EvalSummary]]:
    """Run every point with its policy (resumably) and write ``OUT/sweep.json``.

    Draft-only and target-only run before the mixing points (results keep the grid's order): in the
    serving mode a greedy step depends on how its context entered the KV cache (decoded, or prefilled in
    a batch), so a target step a mixing point stored is not always the step target-only writes live (18
    of 40 GSM8K target-only texts differed when replayed that way, and cost 1.28x the live run's
    seconds). Run first, a baseline's steps are its own."""
    order = sorted(range(len(points)), key=lambda i: points[i][0].policy not in SINGLE_MODEL)
    done: dict[int, tuple[SweepPoint, EvalSummary]] = {}
    before = _written(out)
    for n, i in enumerate(order, start=1):
        point, policy = points[i]
        logger.info("== sweep point %d/%d: %s", n, len(points), policy.name)
        engine = Engine(draft, target, policy, engine_config)
        config = {**run_config, "policy": policy.name}
        summary = run_eval(problems, engine, out / point.slug, config, concurrency=concurrency)
        done[i] = (point, summary)
        _write(out, [done[j] for j in sorted(done)], before)
    return [done[i] for i in sorted(done)]


def _write(out: Path, results: list[tuple[SweepPoint, EvalSummary]], before: list[dict[str, Any]]) -> None:
    """Write ``OUT/sweep.json``: this run's points, and the points of earlier runs into the same folder
    (``before``: the file as this run found it) that this run has not (yet) reached, so a stopped or
    partial run never hides the points already there."""
    data = [
        {"point": point.slug, "policy_name": point.policy, "variant": point.variant, "family": point.family,
         "param": point.param, "value": point.value, **summary.to_dict()}
        for point, summary in results
    ]  # fmt: skip
    rows = {r["point"]: r for r in before}
    rows.update({row["point"]: row for row in data})  # this run's rows replace theirs, in place
    (out / "sweep.json").write_text(json.dumps(list(rows.values()), indent=2))


def _written(out: Path) -> list[dict[str, Any]]:
    """The rows of ``OUT/sweep.json`` as a run finds it (none when missing or unreadable)."""
    path = out / "sweep.json"
    if not path.is_file():
        return []
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    if not isinstance(previous, list):
        return []
    return [r for r in previous if isinstance(r, dict) and "point" in r]
