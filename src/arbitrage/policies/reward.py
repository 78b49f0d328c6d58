"""Policies driven by a process reward model: RSD (the baseline) and the Arbitrage Oracle (upper bound).

- **RSD** (reward-guided speculative decoding), threshold ``t``: the PRM scores the draft's step; it is
  accepted when its reward ``s_draft ≥ t`` and escalated otherwise. The target's step is never scored
  for the decision; with ``diagnose`` on, an escalated step's target output is scored too, so the trace
  can count *wasted escalations* (the target's step scored no better than the draft's). That scoring is
  diagnostic: its seconds go to ``Decision.diagnostic_seconds``, outside the policy's time and the
  solve's latency.
- **Oracle**, threshold ``τ``: draft and target both write the step from the same prefix, the PRM scores
  both, and the target's step is kept iff the advantage ``Δ = s_target − s_draft > τ``. It always pays for
  the target's step, so it is an upper bound on what a router predicting Δ could reach, not a fast
  policy. With ``target_samples = k > 1`` it draws k − 1 extra target samples (temperature > 0, seeded)
  and uses the mean reward of all k as ``s_target`` (the paper's variance reduction); the greedy target
  step is the one kept on escalation.

An empty step (the model ended its answer without writing anything) has nothing to score: reward 0.
PRM time is measured by the engine as the step's ``policy_seconds`` and is part of the solve's wall time;
PRM calls replayed from a score cache (:mod:`arbitrage.prm.cache`) add their stored seconds instead.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, TypeVar

from arbitrage.backends.base import StepOutput
from arbitrage.policies.base import StepView
from arbitrage.policies.options import OracleOptions, RSDOptions
from arbitrage.prm.base import StepScorer
from arbitrage.seeds import sample_seed
from arbitrage.trace import Decision

OptionsT = TypeVar("OptionsT", RSDOptions, OracleOptions)


class _Scoring:
    """Scores candidate steps for a view and keeps the PRM's cost figures for the decision's info."""

    def __init__(self, scorer: StepScorer) -> None:
        self.scorer = scorer

    def reward(self, view: StepView, step: StepOutput, info: dict[str, float]) -> float:
        if not step.text.strip():
            return 0.0
        result = self.scorer.score(view.question, (*view.steps, step.text), only_last=True)
        info["prm_calls"] = info.get("prm_calls", 0) + 1
        info["prm_seconds"] = info.get("prm_seconds", 0.0) + result.seconds
        info["prm_prefill_tokens"] = info.get("prm_prefill_tokens", 0) + result.prefill_tokens
        if result.info.get("replayed"):  # from a score cache: its stored cost counts as policy time
            info["prm_replayed"] = info.get("prm_replayed", 0) + 1
            info["prm_replayed_seconds"] = info.get("prm_replayed_seconds", 0.0) + result.seconds
        return result.last


def _options(cls: type[OptionsT], options: OptionsT | None, values: dict[str, Any]) -> OptionsT:
    if options is None:
        return cls(**values)
    if values:
        raise TypeError(f"Give {cls.__name__} or its fields, not both (got {', '.join(values)})")
    return options


class RSDPolicy:
    """Accept the draft's step iff its PRM reward is at least ``threshold``."""

    skip_draft = False

    def __init__(self, scorer: StepScorer, options: RSDOptions | None = None, **values: Any) -> None:
        """``options`` (validated), or their fields as keyword ``values`` (validated here)."""
        self.options = _options(RSDOptions, options, values)
        self.scorer = scorer
        self.threshold = self.options.threshold
        self.diagnose = self.options.diagnose
        self._scoring = _Scoring(scorer)

    @property
    def name(self) -> str:
        return f"rsd(t={self.threshold:g}, prm={self.scorer.name})"

    def decide(self, view: StepView) -> Decision:
        info: dict[str, float] = {}
        reward = self._scoring.reward(view, view.draft, info)
        escalate = reward < self.threshold
        target_reward = None
        diagnostic = 0.0
        if escalate and self.diagnose:
            # the target writes this step anyway (escalated); scoring it only serves the waste count
            target = view.target_step()
            t0 = time.perf_counter()
            target_reward = self._scoring.reward(view, target, {})
            diagnostic = time.perf_counter() - t0
        return Decision(
            escalate=escalate,
            score=reward,
            threshold=self.threshold,
            draft_reward=reward,
            target_reward=target_reward,
            reason=f"reward {reward:.2f} {'<' if escalate else '>='} t",
            info=info,
            diagnostic_seconds=diagnostic,
            replayed_seconds=info.get("prm_replayed_seconds", 0.0),
        )


class OraclePolicy:
    """Keep the target's step iff its (mean) reward beats the draft's by more than ``tau``."""

    skip_draft = False

    def __init__(self, scorer: StepScorer, options: OracleOptions | None = None, **values: Any) -> None:
        """``options`` (validated), or their fields as keyword ``values`` (validated here)."""
        self.options = _options(OracleOptions, options, values)
        self.scorer = scorer
        self.tau = self.options.tau
        self.target_samples = self.options.target_samples
        self.temperature = self.options.temperature
        self.seed = self.options.seed
        self._scoring = _Scoring(scorer)

    @property
    def name(self) -> str:
        k = f", k={self.target_samples}" if self.target_samples > 1 else ""
        return f"oracle(tau={self.tau:g}{k}, prm={self.scorer.name})"

    def _sample_seed(self, view: StepView, sample: int) -> int:
        return sample_seed(self.seed, view.question, len(view.steps), sample)

    def decide(self, view: StepView) -> Decision:
        info: dict[str, float] = {}
        draft_reward = self._scoring.reward(view, view.draft, info)
        target_rewards = [self._scoring.reward(view, view.target_step(), info)]
        for i in range(1, self.target_samples):
            params = dataclasses.replace(
                view.params, temperature=self.temperature, seed=self._sample_seed(view, i)
            )
            target_rewards.append(self._scoring.reward(view, view.sample_target(params), info))
        target_reward = sum(target_rewards) / len(target_rewards)
        advantage = target_reward - draft_reward
        escalate = advantage > self.tau
        extra = {"target_rewards": [round(r, 6) for r in target_rewards]} if self.target_samples > 1 else {}
        return Decision(
            escalate=escalate,
            score=advantage,
            threshold=self.tau,
            draft_reward=draft_reward,
            target_reward=target_reward,
            reason=f"Δ {advantage:+.2f} {'>' if escalate else '<='} τ",
            info={**info, **extra},
            replayed_seconds=info.get("prm_replayed_seconds", 0.0),
        )
