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
    tau: float = 0.0  # router: escalate when ŷ > tau (unless target_rate is set)
    router_path: str | None = None  # router: folder of a router saved by `arbitrage train-router`
    target_rate: float | None = None  # router: pick tau from the router's table for this escalation rate


def _random(options: PolicyOptions) -> RoutingPolicy:
    return RandomPolicy(options.p, seed=options.seed)


def _router(options: PolicyOptions) -> RoutingPolicy:
    from arbitrage.policies.router import build_router_policy

    if options.target_rate is not None and options.tau != 0.0:
        raise ConfigError("Give the router policy either --tau or --target-rate, not both")
    tau = None if options.target_rate is not None else options.tau
    return build_router_policy(options.router_path, tau, options.target_rate)


POLICIES: dict[str, Callable[[PolicyOptions], RoutingPolicy]] = {
    "draft": lambda _: DraftOnlyPolicy(),
    "target": lambda _: TargetOnlyPolicy(),
    "random": _random,
    "router": _router,
}
POLICY_NAMES = tuple(POLICIES)


def build_policy(name: str, options: PolicyOptions | None = None) -> RoutingPolicy:
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ConfigError(f"Unknown policy {name!r} (known: {', '.join(POLICIES)})") from None
    return factory(options or PolicyOptions())
