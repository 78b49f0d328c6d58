"""A judge checked by the arithmetic verifier: the verifier may only veto.

reward = judge reward, times ``fail_factor`` (0.1 by default) when a stated equation of the step is
wrong. A step with no checkable equation, or whose equations all hold, keeps the judge's reward: the
verifier is exact about arithmetic slips but blind to wrong quantities and wrong reasoning, so a pass
proves little, while a failed equation is near-certain evidence of a wrong step. Multiplying (rather
than setting to 0) keeps the judge's order among vetoed steps.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from arbitrage.errors import ConfigError
from arbitrage.prm.arithmetic import ArithmeticVerifier
from arbitrage.prm.base import StepScorer, StepScores, check_request


class VetoScorer:
    """``base``'s rewards, scaled by ``fail_factor`` on steps whose arithmetic is wrong."""

    def __init__(
        self, base: StepScorer, verifier: ArithmeticVerifier | None = None, fail_factor: float = 0.1
    ) -> None:
        if not 0.0 <= fail_factor < 1.0:
            raise ConfigError(f"fail_factor must be in [0, 1), got {fail_factor}")
        self.base = base
        self.verifier = verifier or ArithmeticVerifier()
        self.fail_factor = fail_factor
        self.name = f"{base.name}+arith"

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        check_request(question, steps)
        t0 = time.perf_counter()
        base = self.base.score(question, steps, only_last=only_last)
        rewards = []
        vetoed = []
        for offset, reward in enumerate(base.rewards):
            verdict, checks = self.verifier.check(steps[base.first + offset])
            failed = bool(checks) and verdict == 0.0
            vetoed.append(failed)
            rewards.append(reward * self.fail_factor if failed else reward)
        return StepScores(
            rewards=tuple(rewards),
            first=base.first,
            seconds=time.perf_counter() - t0,
            scorer=self.name,
            prompt_tokens=base.prompt_tokens,
            prefill_tokens=base.prefill_tokens,
            info={
                **base.info,
                "arith_veto": vetoed,
                # the base scorer's own result, so one run measures both (eval-prm reports it too)
                "base": {"scorer": base.scorer, "rewards": list(base.rewards), "seconds": base.seconds},
            },
        )

    def close(self) -> None:
        self.base.close()
