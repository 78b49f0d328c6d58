"""Generator backends (one module each) and the single place that picks one from a spec string."""

from arbitrage.backends.base import FinishReason, Generator, StepContext, StepOutput, StepParams
from arbitrage.backends.loader import GeneratorOptions, load_generator

__all__ = [
    "FinishReason",
    "Generator",
    "GeneratorOptions",
    "StepContext",
    "StepOutput",
    "StepParams",
    "load_generator",
]
