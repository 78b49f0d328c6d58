"""Routing policies, their options, and the registry that builds a policy from its name and options."""

from arbitrage.policies.base import ContextView, DraftConfidence, EarlyDecisions, RoutingPolicy, StepView
from arbitrage.policies.basic import DraftOnlyPolicy, RandomPolicy, TargetOnlyPolicy
from arbitrage.policies.factory import (
    POLICIES,
    POLICY_NAMES,
    PolicyEntry,
    build_policy,
    needs_scorer,
    policy_entry,
    policy_options,
)
from arbitrage.policies.options import (
    EarlyOptions,
    NoOptions,
    OracleOptions,
    RandomOptions,
    RouterOptions,
    RSDOptions,
    VerifyOptions,
)

__all__ = [
    "POLICIES",
    "POLICY_NAMES",
    "ContextView",
    "DraftConfidence",
    "DraftOnlyPolicy",
    "EarlyDecisions",
    "EarlyOptions",
    "NoOptions",
    "OracleOptions",
    "PolicyEntry",
    "RSDOptions",
    "RandomOptions",
    "RandomPolicy",
    "RouterOptions",
    "RoutingPolicy",
    "StepView",
    "TargetOnlyPolicy",
    "VerifyOptions",
    "build_policy",
    "needs_scorer",
    "policy_entry",
    "policy_options",
]
