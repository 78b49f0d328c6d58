"""The policy registry: each policy's name, its options class and how to build it (one entry each).

``build_policy(name, options, scorer=...)`` is the one place that builds a policy (the CLI, eval, sweep
and the server all come through here). Options are the policy's own validated dataclass
(:mod:`arbitrage.policies.options`); the step scorer (PRM) is a dependency, passed to the build step,
never an option. A new policy registers by adding one :class:`PolicyEntry` to :data:`POLICIES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arbitrage.errors import ConfigError, PolicyOptionError
from arbitrage.policies.base import RoutingPolicy
from arbitrage.policies.basic import DraftOnlyPolicy, RandomPolicy, TargetOnlyPolicy
from arbitrage.policies.options import (
    AutoOptions,
    EarlyOptions,
    NoOptions,
    OracleOptions,
    RandomOptions,
    RouterOptions,
    RSDOptions,
    VerifyOptions,
    make_options,
)

if TYPE_CHECKING:
    from arbitrage.prm.base import StepScorer

Builder = Callable[[Any, "StepScorer | None"], RoutingPolicy]  # (validated options, scorer) -> policy


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One registered policy."""

    options: type[Any]  # its options dataclass (validated in __post_init__)
    build: Builder  # builds the policy from an instance of ``options`` and the scorer (None if unneeded)
    needs_scorer: bool = False  # it scores steps with a process reward model (build gets one)


def _scorer(name: str, scorer: StepScorer | None) -> StepScorer:
    if scorer is None:
        raise PolicyOptionError(f"The {name} policy needs a process reward model ({{prm}})", "prm")
    return scorer


def _rsd(options: RSDOptions, scorer: StepScorer | None) -> RoutingPolicy:
    from arbitrage.policies.reward import RSDPolicy

    return RSDPolicy(_scorer("rsd", scorer), options)


def _oracle(options: OracleOptions, scorer: StepScorer | None) -> RoutingPolicy:
    from arbitrage.policies.reward import OraclePolicy

    return OraclePolicy(_scorer("oracle", scorer), options)


def _router(options: RouterOptions, _: StepScorer | None) -> RoutingPolicy:
    from arbitrage.policies.router import build_router_policy

    return build_router_policy(options)


def _verify(options: VerifyOptions, _: StepScorer | None) -> RoutingPolicy:
    from arbitrage.policies.verify import build_verify_policy

    return build_verify_policy(options)


def _early(options: EarlyOptions, _: StepScorer | None) -> RoutingPolicy:
    from arbitrage.policies.early import build_early_policy

    return build_early_policy(options)


def _auto(options: AutoOptions, _: StepScorer | None) -> RoutingPolicy:
    from arbitrage.policies.auto import build_auto_policy

    return build_auto_policy(options, lambda name, values: build_policy(name, policy_options(name, values)))


POLICIES: dict[str, PolicyEntry] = {
    "auto": PolicyEntry(AutoOptions, _auto),
    "draft": PolicyEntry(NoOptions, lambda _o, _s: DraftOnlyPolicy()),
    "target": PolicyEntry(NoOptions, lambda _o, _s: TargetOnlyPolicy()),
    "random": PolicyEntry(RandomOptions, lambda o, _s: RandomPolicy(o.p, seed=o.seed)),
    "rsd": PolicyEntry(RSDOptions, _rsd, needs_scorer=True),
    "oracle": PolicyEntry(OracleOptions, _oracle, needs_scorer=True),
    "router": PolicyEntry(RouterOptions, _router),
    "verify": PolicyEntry(VerifyOptions, _verify),
    "early": PolicyEntry(EarlyOptions, _early),
}
POLICY_NAMES = tuple(POLICIES)


def policy_entry(name: str) -> PolicyEntry:
    """The registry entry of ``name`` (ConfigError naming the known ones if there is none)."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(f"Unknown policy {name!r} (known: {', '.join(POLICIES)})") from None


def needs_scorer(name: str) -> bool:
    """Whether the policy ``name`` needs a step scorer (PRM) to be built."""
    return policy_entry(name).needs_scorer


def policy_options(name: str, values: Mapping[str, Any] | None = None, **more: Any) -> Any:
    """The validated options object of policy ``name`` from loose values (strings are coerced).

    >>> policy_options("random", p=0.3)
    RandomOptions(p=0.3, seed=0)
    """
    return make_options(name, policy_entry(name).options, {**(values or {}), **more})


def build_policy(name: str, options: Any = None, *, scorer: StepScorer | None = None) -> RoutingPolicy:
    """Build policy ``name`` from its options (default: the policy's defaults) and, for policies that
    score steps, the ``scorer``."""
    entry = policy_entry(name)
    if options is None:
        options = policy_options(name)
    elif not isinstance(options, entry.options):
        raise ConfigError(f"The {name} policy takes {entry.options.__name__}, got {type(options).__name__}")
    return entry.build(options, scorer)
