"""The collector's routing policy: see both candidates, score both, follow a rule, record everything.

:class:`RecordingPolicy` is what ``arbitrage collect`` runs inside the :class:`~arbitrage.engine.Engine`
(a collection tool, not a policy users route with). For every step it

0. when the target is a verifier (:class:`~arbitrage.backends.base.Verifier`), has it verify the draft's
   step (teacher forcing, :meth:`_verify`): the target's view of ``z_d`` for the row's ``t_*`` columns;
1. asks for both candidates from the same prefix: the draft's step ``z_d`` (``view.draft``) and the
   target's greedy step ``z_t`` (``view.target_step()``), plus ``k − 1`` extra target samples
   (``view.sample_target``) at ``temperature``, seeded by :func:`arbitrage.seeds.sample_seed` (the
   oracle policy's rule, so a collected row and the oracle at routing time draw the same samples);
2. scores them with the PRM right after each other, from the same prefix (the scorer's cached state of
   the solution so far), draft first; candidates with identical text are scored once, so identical
   texts get ``Δ = 0`` exactly (a nondeterministic judge cannot make them differ);
3. decides by the *follow* rule: ``oracle`` (the target's step iff ``Δ = mean(s_t) − s_d > τ``, as the
   Arbitrage Oracle decides), ``draft``, ``target`` or ``random`` (a fair coin per (seed, question, step));
4. records in its :class:`~arbitrage.trace.Decision` what a :class:`~arbitrage.router.data.StepPair` row
   needs beyond the engine's own record: ``draft_reward`` (``s_d``), ``target_reward`` (``s_t``) and, in
   ``info``, the reward of every target sample, the seconds the samples and the PRM took, and the
   target's verification of ``z_d`` (:data:`VERIFICATION`, None without a verifier).

The engine then keeps the followed step and applies its own stopping rules, exactly as at routing time.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

from arbitrage.backends.base import StepContext, StepOutput, Verification, Verifier
from arbitrage.errors import ConfigError
from arbitrage.policies.base import StepView
from arbitrage.prm.base import StepScorer
from arbitrage.seeds import sample_seed
from arbitrage.trace import Decision

Follow = Literal["oracle", "draft", "target", "random"]

# keys of Decision.info a recording policy always writes (read by arbitrage.labelling.collect)
S_T_SAMPLES = "s_t_samples"  # [k] PRM reward of each target sample, the greedy one first
TARGET_SAMPLE_SECONDS = "target_sample_seconds"  # Σ wall seconds of the k target step calls
PRM_SECONDS = "prm_seconds"  # Σ wall seconds of the PRM calls of this decision
VERIFICATION = "verification"  # the target's Verification of z_d (None: the target is no verifier)


@dataclass(frozen=True, slots=True)
class RecordingOptions:
    """How the recording policy samples, scores and follows."""

    follow: Follow = "oracle"  # which candidate the solution continues with
    tau: float = 0.0  # oracle follow rule: take the target's step when Δ > τ
    target_samples: int = 1  # k: target steps per prefix; the k − 1 extra ones are sampled
    temperature: float = 0.7  # sampling temperature of the extra target samples
    seed: int = 0  # seeds the extra samples and the random follow rule

    def __post_init__(self) -> None:
        if self.follow not in get_args(Follow):
            raise ConfigError(f"--follow must be oracle, draft, target or random, got {self.follow!r}")
        if not -1.0 <= self.tau <= 1.0:
            raise ConfigError(f"--tau must be within [-1, 1], got {self.tau}")
        if self.target_samples < 1:
            raise ConfigError(f"--target-samples must be >= 1, got {self.target_samples}")
        if self.target_samples > 1 and self.temperature <= 0:
            raise ConfigError("Extra target samples need a sampling temperature > 0")


class RecordingPolicy:
    """Scores draft and target candidates of every step and follows :class:`RecordingOptions`' rule."""

    skip_draft = False  # both candidates of every step are needed

    def __init__(
        self, scorer: StepScorer, options: RecordingOptions | None = None, verifier: Verifier | None = None
    ) -> None:
        self.scorer = scorer
        self.options = options or RecordingOptions()
        self.verifier = verifier  # the engine's target when it can verify (None: no t_* columns)

    @property
    def name(self) -> str:
        o = self.options
        rule = f"oracle, tau={o.tau:g}" if o.follow == "oracle" else o.follow
        k = f", k={o.target_samples}" if o.target_samples > 1 else ""
        return f"record(follow={rule}{k}, prm={self.scorer.name})"

    def decide(self, view: StepView) -> Decision:
        o = self.options
        step = len(view.steps)
        # 0. the target's view of the draft step (before it writes its own: z_d stays in its cache)
        verification = self._verify(view)
        # 1. both candidates from the same prefix (the target's extra samples seeded per sample)
        candidates = [view.draft, view.target_step()]
        for i in range(1, o.target_samples):
            params = dataclasses.replace(
                view.params, temperature=o.temperature, seed=sample_seed(o.seed, view.question, step, i)
            )
            candidates.append(view.sample_target(params))
        # 2. score them one after the other from the same prefix; identical texts once
        scored: dict[str, float] = {}
        info: dict[str, Any] = {PRM_SECONDS: 0.0}
        rewards = [self._reward(view, c, scored, info) for c in candidates]
        draft_reward, target_rewards = rewards[0], rewards[1:]
        target_reward = sum(target_rewards) / len(target_rewards)
        advantage = target_reward - draft_reward
        # 3. the follow rule
        if o.follow == "oracle":
            escalate = advantage > o.tau
        elif o.follow == "random":
            escalate = random.Random(f"{o.seed}|{view.question}|{step}").random() < 0.5
        else:
            escalate = o.follow == "target"
        # 4. what the row needs beyond the engine's record
        info[S_T_SAMPLES] = target_rewards
        info[TARGET_SAMPLE_SECONDS] = sum(c.seconds for c in candidates[1:])
        info[VERIFICATION] = verification
        return Decision(
            escalate=escalate,
            score=advantage,
            threshold=o.tau if o.follow == "oracle" else None,
            draft_reward=draft_reward,
            target_reward=target_reward,
            reason=f"Δ {advantage:+.2f}, follow {o.follow}: {'target' if escalate else 'draft'}",
            info=info,
            replayed_seconds=info.get("prm_replayed_seconds", 0.0),
        )

    def _verify(self, view: StepView) -> Verification | None:
        """The target's verification of the draft step (None when the target cannot verify).

        The one place that asks for it: the step view's ``verify_target()`` (computed once per step) where
        the engine offers it, else the target's ``verify_step`` directly.
        """
        if self.verifier is None:
            return None
        verify_target = getattr(view, "verify_target", None)
        if callable(verify_target):
            result: Verification | None = verify_target()
            return result
        context = StepContext(question=view.question, steps=view.steps)
        return self.verifier.verify_step(context, view.draft, view.params)

    def _reward(
        self, view: StepView, step: StepOutput, scored: dict[str, float], info: dict[str, Any]
    ) -> float:
        """The PRM's reward of a candidate (0 for an empty step: nothing to score)."""
        if not step.text.strip():
            return 0.0
        if step.text not in scored:
            t0 = time.perf_counter()
            result = self.scorer.score(view.question, (*view.steps, step.text), only_last=True)
            info[PRM_SECONDS] += time.perf_counter() - t0
            if result.info.get("replayed"):  # from a score cache: its stored cost counts as policy time
                info["prm_replayed_seconds"] = info.get("prm_replayed_seconds", 0.0) + result.seconds
            scored[step.text] = result.last
        return scored[step.text]
