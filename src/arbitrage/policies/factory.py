"""Build a routing policy from its name and options (the CLI, eval and server all come through here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from arbitrage.errors import ConfigError
from arbitrage.policies.base import RoutingPolicy
from arbitrage.policies.basic import DraftOnlyPolicy, RandomPolicy, TargetOnlyPolicy


@dataclass(frozen=True, slots=True)
class PolicyOptions:
    """Every policy parameter any policy takes; each policy reads the ones it needs."""

    p: float = 0.5  # random: escalation probability
    seed: int = 0  # random: seed of the draws


def _random(options: PolicyOptions) -> RoutingPolicy:
    return RandomPolicy(options.p, seed=options.seed)


POLICIES: dict[str, Callable[[PolicyOptions], RoutingPolicy]] = {
    "draft": lambda _: DraftOnlyPolicy(),
    "target": lambda _: TargetOnlyPolicy(),
    "random": _random,
}
POLICY_NAMES = tuple(POLICIES)


def build_policy(name: str, options: PolicyOptions | None = None) -> RoutingPolicy:
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ConfigError(f"Unknown policy {name!r} (known: {', '.join(POLICIES)})") from None
    return factory(options or PolicyOptions())
