"""arbitrage: advantage-aware step-level speculative reasoning.

A small *draft* model writes each reasoning step; a routing policy decides whether to keep it or to
*escalate* the step to a large *target* model. See :mod:`arbitrage.engine` for the vocabulary.

The Python API in ten lines (models by spec, a policy by name with its options, a solve)::

    import arbitrage

    spec = arbitrage.RunSpec(
        draft="smollm2-135m",
        target="qwen2.5-coder-1.5b",
        policies=[("random", arbitrage.policy_options("random", p=0.3))],
    )
    with arbitrage.Run(spec) as run:  # loads the models (and a PRM, a router when the policy needs one)
        trace = run.engine(config=arbitrage.EngineConfig(max_steps=12)).solve("What is 12 * 7?")
    print(trace.answer, trace.acceptance_rate)

Parts can also be wired by hand: ``load_generator(spec)``, ``build_policy(name, options, scorer=...)``,
``Engine(draft, target, policy)``.
"""

from arbitrage.backends.base import StepParams
from arbitrage.backends.loader import GeneratorOptions, load_generator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ArbitrageError, ConfigError, PolicyOptionError
from arbitrage.policies import POLICY_NAMES, RoutingPolicy, build_policy, policy_options
from arbitrage.run import Run, RunSpec
from arbitrage.trace import SolveTrace, StepRecord

__all__ = [
    "POLICY_NAMES",
    "ArbitrageError",
    "ConfigError",
    "Engine",
    "EngineConfig",
    "GeneratorOptions",
    "PolicyOptionError",
    "RoutingPolicy",
    "Run",
    "RunSpec",
    "SolveTrace",
    "StepParams",
    "StepRecord",
    "build_policy",
    "load_generator",
    "policy_options",
]
__version__ = "0.1.0"
