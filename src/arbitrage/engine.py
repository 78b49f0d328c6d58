"""The step loop of step-level speculative reasoning, independent of backends and policies.

Vocabulary (used the same way everywhere in arbitrage):

- **step**: the text a model writes up to the step separator (``"\\n\\n"`` by default), or to the end of
  its answer. A solution is its steps joined by the separator.
- **draft** / **target**: the small, cheap model that proposes every step / the large model that writes
  a step only when the policy escalates.
- **draft step**: the draft's proposal for the next step, from the solution so far.
- **accepted**: the draft step is kept as written. **escalated** (regenerated): the target writes the
  step from the same prefix and its text is kept instead; the draft's proposal is discarded.
- **acceptance rate**: share of the solution's steps kept from the draft (step-level, the paper's
  definition). The **token acceptance rate** weights steps by their tokens (the official code's figure).
  **target-call rate**: target step calls per solution step.
- **reward** ``s``: a process reward model's score of a step in context, in [0, 1].
- **advantage** ``Δ = s_target − s_draft``: how much better the target's step is than the draft's.
- **τ** (tau): a policy's escalation threshold: the oracle escalates when ``Δ > τ``, the router when its
  predicted score ``ŷ > τ``, ``verify`` when its verification score exceeds τ. RSD escalates when the
  draft's reward is below its threshold.
- **verification**: the target's teacher-forced view of the draft step (its token logprobs and greedy
  choices, :class:`~arbitrage.backends.base.Verification`), one batched pass, far cheaper than writing
  the step; its cost is part of the target's usage and of every latency.
- **prefix keeping**: an escalated step whose draft step the target has verified keeps the draft's
  tokens up to the first one the target would not have chosen greedily, and the target decodes only
  from there (``continue_step``); for greedy decoding the step is byte-identical to the target's own.
  The tokens kept are the **decode tokens saved** (``kept_tokens``).
- **decision point**: where in a step the policy decides (``Decision.point``): ``before_draft`` (from the
  context alone, before the draft writes), ``probe`` (after the draft's first ``m`` tokens), ``step`` (on
  the draft's whole step, the paper's decision). **Early escalation**: an escalation at one of the first
  two, so that the draft's whole step is never paid for and thrown away.
- **probe**: the draft's first ``m`` tokens of a step (``probe_tokens``; its whole step if it ends
  sooner), written so that a policy with early decisions (:class:`~arbitrage.policies.base.EarlyDecisions`)
  can decide after them, if it likes with the target's verification of them. Escalated there, the
  target continues from the probe's verified agreed prefix; let go on, the draft writes its whole step
  again from the same context (its KV cache holding the probe: for greedy steps, the step it would have
  written in one call; the probe's ``m`` tokens are decoded twice).

The engine asks the draft for a step, the policy for a decision, and the target only when told to. A
step goes through its decision points in order, each asked only when the policy has it: 1. before the
draft (escalate: the target writes the step), 2. the probe (escalate: the target continues from the
agreed prefix), 3. the whole draft step (``RoutingPolicy.decide``, always asked once the draft's step is
whole); the trace keeps every decision (``StepRecord.decisions``) and the probe (``StepRecord.probe``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from arbitrage.answer import extract_answer, has_boxed_answer
from arbitrage.backends.base import (
    FinishReason,
    Generator,
    StepContext,
    StepOutput,
    StepParams,
    Verification,
    Verifier,
)
from arbitrage.errors import ConfigError
from arbitrage.policies.base import ContextView, DraftConfidence, EarlyDecisions, RoutingPolicy, StepView
from arbitrage.trace import Decision, DecisionPoint, Probe, SolveTrace, StepRecord, StopReason

logger = logging.getLogger(__name__)

StepCallback = Callable[[StepRecord], None]
StopCheck = Callable[[], bool]  # True: stop before the next step (the caller lost interest)
# when an escalated step keeps the verified draft prefix: "verified" when the policy had the target
# verify the draft step, "always" (verify before escalating if the policy did not), "never"
KeepPrefix = Literal["verified", "always", "never"]
KEEP_PREFIX: tuple[KeepPrefix, ...] = ("verified", "always", "never")
_D = TypeVar("_D", bound=Decision | None)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Limits and stopping rules of a solve."""

    step: StepParams = field(default_factory=StepParams)  # separator, per-step token cap, sampling
    max_steps: int = 40  # stop after this many accepted steps
    max_total_tokens: int = 2048  # stop once the solution holds this many tokens
    stop_on_boxed: bool = True  # stop at the first step that states a \boxed{} answer
    max_step_repeats: int = 2  # loop guard: a step text may occur this often; one more stops the solve
    # prefix keeping of escalated steps (greedy steps, a target that can verify): see KeepPrefix
    keep_prefix: KeepPrefix = "verified"

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_total_tokens", "max_step_repeats"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.keep_prefix not in KEEP_PREFIX:
            raise ConfigError(
                f"keep_prefix must be one of {', '.join(KEEP_PREFIX)}, got {self.keep_prefix!r}"
            )


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


class Engine:
    """Solves questions step by step with a draft, a target and a routing policy (all injected)."""

    def __init__(
        self,
        draft: Generator,
        target: Generator,
        policy: RoutingPolicy,
        config: EngineConfig | None = None,
    ) -> None:
        self.draft = draft
        self.target = target
        self.policy = policy
        self.config = config or EngineConfig()

    def solve(
        self,
        question: str,
        on_step: StepCallback | None = None,
        should_stop: StopCheck | None = None,
        *,
        prefix: Sequence[str] = (),
    ) -> SolveTrace:
        """Write a full solution; ``on_step`` is called with each step as soon as it is accepted.

        ``should_stop`` is asked before each step (a step in progress cannot be interrupted); once it
        returns True the solve ends with the steps so far and ``stop_reason`` ``"cancelled"``.

        ``prefix``: steps the solution starts from (e.g. a Monte-Carlo rollout continuing a partial
        solution); the models and the policy see them as accepted steps. The trace holds only the steps
        written now (their ``index`` counts the prefix); ``max_steps`` and ``max_total_tokens`` count
        only those, the loop guard counts the prefix's steps too, a prefix whose last step already
        states a boxed answer ends at once (``stop_reason`` ``"answer"``, no step), and ``answer`` is read
        from the whole solution. With ``prefix=()`` this is an ordinary solve.
        """
        if not question or not question.strip():
            raise ConfigError("The question is empty")
        cfg = self.config
        given = tuple(prefix)
        trace = SolveTrace(question=question, policy=self.policy.name, separator=cfg.step.separator)
        seen: Counter[str] = Counter(key for key in map(_normalise, given) if key)
        solution_tokens = 0
        start = time.perf_counter()
        stop: StopReason | None = None
        if given and cfg.stop_on_boxed and has_boxed_answer(given[-1]):
            stop = "answer"
        while stop is None:
            if should_stop is not None and should_stop():
                stop = "cancelled"
                break
            record = self._next_step(question, given, trace)
            trace.diagnostic_seconds += record.diagnostic_seconds  # spent even if the step is dropped
            # 5. loop guard: drop a step that repeats too often and stop
            key = _normalise(record.text)
            if key and seen[key] >= cfg.max_step_repeats:
                stop = "repetition"
                break
            seen[key] += 1
            # 6. accept the step (unless it is an empty final step) and notify
            if record.text or record.finish_reason != FinishReason.EOS:
                trace.steps.append(record)
                trace.policy_seconds += record.policy_seconds
                solution_tokens += record.tokens
                if on_step is not None:
                    on_step(record)
            # 7. stopping rules
            if record.finish_reason == FinishReason.EOS:
                stop = "eos"
            elif cfg.stop_on_boxed and has_boxed_answer(record.text):
                stop = "answer"
            elif len(trace.steps) >= cfg.max_steps:
                stop = "max_steps"
            elif solution_tokens >= cfg.max_total_tokens:
                stop = "max_tokens"
        trace.stop_reason = stop
        trace.wall_seconds = time.perf_counter() - start
        if given:
            whole = cfg.step.separator.join((*given, *(s.text for s in trace.steps)))
            trace.answer = extract_answer(whole)
        else:
            trace.answer = extract_answer(trace.solution) if trace.steps else None
        return trace

    def _next_step(self, question: str, prefix: tuple[str, ...], trace: SolveTrace) -> StepRecord:
        cfg = self.config
        history = tuple(trace.steps)
        context = StepContext(question=question, steps=(*prefix, *(s.text for s in history)))
        index = len(context.steps)
        model_wall = [0.0]  # wall seconds of model calls made for the policy (target steps, verifications)
        policy_seconds = [0.0]

        def make_target(params: StepParams | None) -> StepOutput:
            t = time.perf_counter()
            output = self.target.generate_step(context, params or cfg.step)
            model_wall[0] += time.perf_counter() - t
            trace.usage["target"].observe(output)
            return output

        def make_verification(step: StepOutput) -> Callable[[], Verification]:
            def verify() -> Verification:
                target = self.target
                if not isinstance(target, Verifier):
                    raise ConfigError(
                        f"The target {target.name} cannot verify steps (its backend has no verify_step)"
                    )
                t = time.perf_counter()
                verification = target.verify_step(context, step, cfg.step)
                model_wall[0] += time.perf_counter() - t
                trace.usage["target"].observe_verification(verification)
                return verification

            return verify

        def ask(call: Callable[[], _D]) -> _D:
            # policy time: PRM / router work, less model calls and diagnostic-only work, plus the stored
            # cost of PRM calls replayed from a score cache
            t0, wall0 = time.perf_counter(), model_wall[0]
            decision = call()
            spent = time.perf_counter() - t0 - (model_wall[0] - wall0)
            if decision is not None:
                spent -= decision.diagnostic_seconds
                policy_seconds[0] += decision.replayed_seconds
            policy_seconds[0] += max(0.0, spent)
            return decision

        def view_of(draft: StepOutput, *, partial: bool = False, **known: Any) -> StepView:
            return StepView(
                question=question,
                history=history,
                draft=draft,
                _make_target=make_target,
                params=cfg.step,
                prefix=prefix,
                _make_verification=make_verification(draft),
                partial=partial,
                earlier=tuple(decided),
                **known,
            )

        # 1. target-only decoding never consults the draft
        if self.policy.skip_draft:
            target = make_target(None)
            decision = Decision(escalate=True, reason=getattr(self.policy, "skip_reason", "target only"))
            return self._record(index, None, target, decision, 0.0, 0)
        early = self.policy if isinstance(self.policy, EarlyDecisions) else None
        decided: list[Decision] = []  # decisions at earlier points of this step that let it go on
        # 2. before the draft writes, the policy may escalate from the context alone: the target writes
        if early is not None:
            context_view = ContextView(
                question=question,
                history=history,
                params=cfg.step,
                prefix=prefix,
                _make_last_confidence=lambda: self._last_confidence(context, history, trace, model_wall),
            )
            before = ask(lambda: early.before_draft(context_view))
            if before is not None:
                before = _at(before, "before_draft")
                if before.escalate:
                    target = make_target(None)
                    return self._record(index, None, target, before, policy_seconds[0], 0, early=decided)
                decided.append(before)
        # 3. the draft writes: first its probe, the first m tokens, when the policy decides after them
        probe: Probe | None = None
        extra_samples = 0
        known: dict[str, Any] = {}  # what the policy already had computed at the probe, for step 4
        m = early.probe_tokens if early is not None else 0
        if early is not None and m > 0:
            budget = min(m, cfg.step.max_step_tokens)
            output = self._draft_step(context, dataclasses.replace(cfg.step, max_step_tokens=budget), trace)
            whole = output.finish_reason != FinishReason.LENGTH or budget == cfg.step.max_step_tokens
            probe_view = view_of(output, partial=not whole)
            verdict = _at(ask(lambda: early.after_probe(probe_view)), "probe")
            extra_samples += len(probe_view.extra_samples)
            # 3.1. escalate at the probe: the target continues from the agreed prefix of the probe
            if verdict.escalate:
                continued = probe_view.generated_target or self._escalate(probe_view, context, trace)
                probe = Probe(m, output, whole, probe_view.verification)
                return self._record(index, output, continued, verdict, policy_seconds[0], extra_samples,
                                    probe_view.verification, probe, decided)  # fmt: skip
            probe = Probe(m, output, whole, probe_view.verification)
            decided.append(verdict)
            known["_target"] = probe_view.generated_target  # the target's step does not depend on the draft
            if whole:  # the probe is the draft's step
                draft = output
                known["_verification"] = probe_view.verification
            else:
                # 3.2. let the draft go on: it writes its whole step again from the same context, its KV
                # cache holding the probe's tokens; greedy, that is the step it would have written at once
                draft = self._draft_step(context, cfg.step, trace)
        else:
            draft = self._draft_step(context, cfg.step, trace)
        # 4. the policy decides on the whole draft step (it may ask for the target's step or
        # verification, or score with a PRM)
        view = view_of(draft, **known)
        decision = _at(ask(lambda: self.policy.decide(view)), "step")
        extra_samples += len(view.extra_samples)
        # 5. escalate: the target writes the step (reusing one the policy already requested, or keeping
        # the verified draft prefix)
        target_step = view.generated_target
        if decision.escalate and target_step is None:
            target_step = self._escalate(view, context, trace)
        return self._record(index, draft, target_step, decision, policy_seconds[0], extra_samples,
                            view.verification, probe, decided)  # fmt: skip

    def _draft_step(self, context: StepContext, params: StepParams, trace: SolveTrace) -> StepOutput:
        output = self.draft.generate_step(context, params)
        trace.usage["draft"].observe(output)
        return output

    def _escalate(self, view: StepView, context: StepContext, trace: SolveTrace) -> StepOutput:
        """The target's step for an escalation: continued from the verified prefix of the view's draft
        step (or probe) where prefix keeping applies, else written from the context."""
        if self._keeps_prefix(view):
            return self._continue(context, view.verify_target(), trace)
        return view.target_step()

    def _last_confidence(
        self,
        context: StepContext,
        history: tuple[StepRecord, ...],
        trace: SolveTrace,
        model_wall: list[float],
    ) -> DraftConfidence | None:
        """The draft's view of the solution's last step (:meth:`ContextView.last_step_confidence`)."""
        if not context.steps:
            return None
        last = history[-1] if history else None
        if last is not None and last.draft is not None:  # the draft's own proposal (kept or not)
            return DraftConfidence.of(last.draft, f"the draft's proposal for step {last.index}")
        draft = self.draft
        if not isinstance(draft, Verifier):
            return None
        # the draft has not seen this step's tokens: it evaluates them now (its KV cache keeps them for
        # the step it writes next, so this is mostly the prefill it would have done anyway)
        step = StepOutput(text=context.steps[-1], finish_reason=FinishReason.STEP, model="context", tokens=0)
        before = StepContext(question=context.question, steps=context.steps[:-1])
        t = time.perf_counter()
        verification = draft.verify_step(before, step, self.config.step)
        model_wall[0] += time.perf_counter() - t
        trace.usage["draft"].observe_verification(verification)
        writer = last.model if last is not None else "the given prefix"
        return DraftConfidence(
            verification.token_logprobs,
            verification.entropies[: verification.n],
            f"the draft's view of step {len(context.steps) - 1} ({writer})",
        )

    def _keeps_prefix(self, view: StepView) -> bool:
        """Whether an escalation continues from the verified draft prefix (see ``KeepPrefix``)."""
        mode = self.config.keep_prefix
        if mode == "never" or self.config.step.temperature != 0 or not isinstance(self.target, Verifier):
            return False
        return mode == "always" or view.verification is not None

    def _continue(self, context: StepContext, verification: Verification, trace: SolveTrace) -> StepOutput:
        """The target's greedy step, keeping the draft tokens it agrees with (counted as a target call)."""
        target = self.target
        assert isinstance(target, Verifier)
        output = target.continue_step(context, self.config.step, verification)
        trace.usage["target"].observe(output)
        return output

    @staticmethod
    def _record(
        index: int,
        draft: StepOutput | None,
        target: StepOutput | None,
        decision: Decision,
        policy_seconds: float,
        extra_samples: int,
        verification: Verification | None = None,
        probe: Probe | None = None,
        early: Sequence[Decision] = (),
    ) -> StepRecord:
        kept = target if decision.escalate else draft
        assert kept is not None
        return StepRecord(
            index=index,
            text=kept.text,
            role="target" if decision.escalate else "draft",
            model=kept.model,
            finish_reason=kept.finish_reason,
            draft=draft,
            target=target,
            decision=decision,
            policy_seconds=policy_seconds,
            extra_target_samples=extra_samples,
            diagnostic_seconds=math.fsum(d.diagnostic_seconds for d in (*early, decision)),
            verification=verification,
            probe=probe,
            early=tuple(early),
        )


def _at(decision: Decision, point: DecisionPoint) -> Decision:
    """``decision`` marked as taken at ``point`` (where the engine asked for it)."""
    return decision if decision.point == point else dataclasses.replace(decision, point=point)
