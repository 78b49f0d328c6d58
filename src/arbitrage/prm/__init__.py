"""Process reward models (step scorers): the protocol, the registry and the scorers (see base.py)."""

from arbitrage.prm.base import StepScorer, StepScores
from arbitrage.prm.registry import DEFAULT_PRM, SCORERS, ScorerOptions, load_scorer

__all__ = ["DEFAULT_PRM", "SCORERS", "ScorerOptions", "StepScorer", "StepScores", "load_scorer"]
