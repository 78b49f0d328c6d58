"""Routing policies and the one place that builds a policy from its name and options."""

from arbitrage.policies.base import RoutingPolicy, StepView
from arbitrage.policies.basic import DraftOnlyPolicy, RandomPolicy, TargetOnlyPolicy
from arbitrage.policies.factory import POLICY_NAMES, PolicyOptions, build_policy

__all__ = [
    "POLICY_NAMES",
    "DraftOnlyPolicy",
    "PolicyOptions",
    "RandomPolicy",
    "RoutingPolicy",
    "StepView",
    "TargetOnlyPolicy",
    "build_policy",
]
