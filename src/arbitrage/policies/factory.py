"""Build a routing policy from its name and options (the CLI, eval and server all come through here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arbitrage.errors import ConfigError
from arbitrage.policies.base import RoutingPolicy
from arbitrage.policies.basic import DraftOnlyPolicy, RandomPolicy, TargetOnlyPolicy

if TYPE_CHECKING:
    from arbitrage.prm.base import StepScorer


@dataclass(frozen=True, slots=True)
class PolicyOptions:
    """Every policy parameter any policy takes; each policy reads the ones it needs."""

    p: float = 0.5  # random: escalation probability
    seed: int = 0  # random: seed of the draws; oracle: seed of the extra target samples
    scorer: StepScorer | None = None  # rsd, oracle: the process reward model
    threshold: float = 0.7  # rsd: accept the draft step iff its reward >= threshold
    tau: float = 0.0  # oracle: escalate iff s_target - s_draft > tau; router: escalate iff ŷ > tau
    router_path: str | None = None  # router: folder of a router saved by `arbitrage train-router`
    target_rate: float | None = None  # router: pick tau from the router's table for this escalation rate
    target_samples: int = 1  # oracle: target samples averaged for s_target (k > 1 samples at temperature)
    sample_temperature: float = 0.7  # oracle: temperature of the extra target samples
    diagnose: bool = False  # rsd: also score escalated target steps (waste count; cost kept apart)


def _random(options: PolicyOptions) -> RoutingPolicy:
    return RandomPolicy(options.p, seed=options.seed)


def _router(options: PolicyOptions) -> RoutingPolicy:
    from arbitrage.policies.router import build_router_policy

    if options.target_rate is not None and options.tau != 0.0:
        raise ConfigError("Give the router policy either --tau or --target-rate, not both")
    tau = None if options.target_rate is not None else options.tau
    return build_router_policy(options.router_path, tau, options.target_rate)


def _scorer(options: PolicyOptions, policy: str) -> StepScorer:
    if options.scorer is None:
        raise ConfigError(f"The {policy} policy needs a process reward model (--prm)")
    return options.scorer


def _rsd(options: PolicyOptions) -> RoutingPolicy:
    from arbitrage.policies.reward import RSDPolicy

    return RSDPolicy(_scorer(options, "rsd"), threshold=options.threshold, diagnose=options.diagnose)


def _oracle(options: PolicyOptions) -> RoutingPolicy:
    from arbitrage.policies.reward import OraclePolicy

    return OraclePolicy(
        _scorer(options, "oracle"),
        tau=options.tau,
        target_samples=options.target_samples,
        temperature=options.sample_temperature,
        seed=options.seed,
    )


POLICIES: dict[str, Callable[[PolicyOptions], RoutingPolicy]] = {
    "draft": lambda _: DraftOnlyPolicy(),
    "target": lambda _: TargetOnlyPolicy(),
    "random": _random,
    "rsd": _rsd,
    "oracle": _oracle,
    "router": _router,
}
SCORED_POLICIES = frozenset({"rsd", "oracle"})  # policies that need PolicyOptions.scorer
POLICY_NAMES = tuple(POLICIES)


def build_policy(name: str, options: PolicyOptions | None = None) -> RoutingPolicy:
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ConfigError(f"Unknown policy {name!r} (known: {', '.join(POLICIES)})") from None
    return factory(options or PolicyOptions())
