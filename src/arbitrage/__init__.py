"""arbitrage: advantage-aware step-level speculative reasoning.

A small *draft* model writes each reasoning step; a routing policy decides whether to keep it or to
*escalate* the step to a large *target* model. See :mod:`arbitrage.engine` for the vocabulary.
"""

from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ArbitrageError
from arbitrage.trace import SolveTrace, StepRecord

__all__ = ["ArbitrageError", "Engine", "EngineConfig", "SolveTrace", "StepRecord"]
__version__ = "0.1.0"
