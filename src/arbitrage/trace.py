"""Results of a solve: one :class:`StepRecord` per accepted step, usage per model, the whole trace.

Read by the CLI (human and ``--json`` output), the evaluation harness (per-problem JSON lines), the data
collector and the server's ``arbitrage`` extension object.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from arbitrage.backends.base import FinishReason, StepOutput, Verification

Role = Literal["draft", "target"]
# where in a step a policy decided (see the engine's vocabulary): before the draft wrote anything, after
# the draft's first tokens (a probe), or on the draft's whole step
DecisionPoint = Literal["before_draft", "probe", "step"]
DECISION_POINTS: tuple[DecisionPoint, ...] = ("before_draft", "probe", "step")


@dataclass(frozen=True, slots=True)
class Decision:
    """A routing policy's verdict on one draft step, with the evidence it used."""

    escalate: bool  # True: the target (re)writes this step; False: the draft step is accepted
    score: float | None = (
        None  # the policy's statistic: reward (rsd), advantage (oracle), ŷ (router), draw (random)
    )
    threshold: float | None = None  # the value ``score`` was compared with
    draft_reward: float | None = None  # PRM reward of the draft step, in [0, 1], when computed
    target_reward: float | None = None  # PRM reward of the target step (mean over samples), when computed
    reason: str = ""  # one short human-readable phrase
    info: dict[str, Any] = field(default_factory=dict)  # policy-specific extras (JSON-serialisable)
    # seconds the policy spent only on diagnostics (e.g. RSD scoring the target's step for the waste
    # count): excluded from the step's policy_seconds and from the solve's latency
    diagnostic_seconds: float = 0.0
    # stored seconds of PRM calls replayed from a score cache (arbitrage.prm.cache): not spent now, but
    # added to the step's policy_seconds so latencies stay sums of measured costs
    replayed_seconds: float = 0.0
    point: DecisionPoint = "step"  # where in the step it was taken (the engine asks at each point)

    @property
    def advantage(self) -> float | None:
        """Δ = s_target − s_draft, when both rewards are known."""
        if self.draft_reward is None or self.target_reward is None:
            return None
        return self.target_reward - self.draft_reward

    @property
    def wasted(self) -> bool | None:
        """An escalation whose target step did not score above the draft's (None: not escalated or
        a reward is unknown)."""
        if not self.escalate or self.advantage is None:
            return None
        return self.advantage <= 0


@dataclass(frozen=True, slots=True)
class Probe:
    """The draft's first tokens of a step, written so that a policy could decide early (a *probe*).

    Read by the trace (``StepRecord.probe``) and the evaluation records (probes and early escalations).
    """

    tokens: int  # m: the draft tokens the policy asked for before deciding
    output: StepOutput  # what the draft wrote: its first ≤ m tokens (its whole step if it ended sooner)
    whole_step: bool  # the step ended within the probe (separator, end of answer, or the per-step cap)
    verification: Verification | None = None  # the target's view of those tokens, when the policy asked

    @property
    def agreed(self) -> int | None:
        """Probe tokens the target agrees with before its first disagreement (None: not verified)."""
        v = self.verification
        if v is None:
            return None
        return v.n if v.first_divergence is None else min(v.first_divergence, v.n)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One accepted step of a solution and how it came to be."""

    index: int  # 0-based position in the solution
    text: str  # the accepted step text (separator excluded)
    role: Role  # which model's text was kept
    model: str  # name of that model
    finish_reason: FinishReason  # why the kept step ended
    # the draft's proposal: its whole step, or its probe when the policy escalated at the probe; None
    # when the target wrote the step without a draft step (target-only, or escalated before the draft)
    draft: StepOutput | None
    target: StepOutput | None  # the target's step, when the policy escalated or asked for it
    decision: Decision  # the decision that settled the step (its ``point`` says where it was taken)
    policy_seconds: float  # wall seconds inside the policy (PRM / router), target generation excluded
    extra_target_samples: int = 0  # additional target samples the policy drew (e.g. oracle k > 1)
    diagnostic_seconds: float = 0.0  # policy time spent on diagnostics only (not in policy_seconds)
    # the target's verification of the draft step, when the policy asked for it or the engine verified
    # before escalating (keep_prefix="always"); its cost is in the target's usage. For a step escalated
    # at a probe: the verification of the probe
    verification: Verification | None = None
    probe: Probe | None = None  # the draft's first tokens, when the policy decided after them
    # decisions taken at earlier points of this step that let it go on (before the draft wrote, at the
    # probe), in order; ``decision`` is the last one
    early: tuple[Decision, ...] = ()

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """Every decision taken for this step, in order (the earlier points, then ``decision``)."""
        return (*self.early, self.decision)

    @property
    def kept(self) -> StepOutput:
        """The output whose text was accepted."""
        kept = self.target if self.role == "target" else self.draft
        assert kept is not None
        return kept

    @property
    def tokens(self) -> int:
        """Tokens of the accepted step."""
        return self.kept.tokens

    @property
    def escalated(self) -> bool:
        return self.decision.escalate

    @property
    def kept_tokens(self) -> int:
        """Decode tokens the target saved on this step by keeping the verified draft prefix (0: none)."""
        return _kept_tokens(self.target)


def _kept_tokens(output: StepOutput | None) -> int:
    """``extra["kept_tokens"]`` of a step continued from a verified prefix (0 for any other step)."""
    if output is None:
        return 0
    kept = output.extra.get("kept_tokens", 0)
    return int(kept) if isinstance(kept, int | float) else 0


@dataclass(slots=True)
class ModelUsage:
    """What one model role spent during a solve. Updated through ``observe`` (step calls) and
    ``observe_verification`` (verify calls).

    seconds = prefill_seconds + decode_seconds + verify_seconds: every latency figure built from usage
    includes the verifications.
    """

    model: str = ""
    calls: int = 0  # step calls (generate_step, or continue_step after a verification)
    generated_tokens: int = 0  # Σ tokens of the steps written, kept or not (kept prefixes included)
    prompt_tokens: int = 0  # Σ context tokens over calls
    prefill_tokens: int = 0  # Σ context tokens actually evaluated (rest reused from the KV cache)
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    kept_tokens: int = 0  # Σ step tokens kept from a verified draft prefix, not decoded (tokens saved)
    verify_calls: int = 0  # verify_step calls (the target's teacher-forced view of a draft step)
    verify_seconds: float = 0.0  # Σ wall seconds of those calls
    verify_prefill_tokens: int = 0  # Σ tokens they evaluated (context not in the KV cache, and the step)
    # token-level speculation inside this model's steps (backends/speculation.py); the proposer's
    # seconds are inside decode_seconds
    spec_rounds: int = 0  # batched checks of proposed tokens
    spec_proposed: int = 0  # Σ tokens proposed
    spec_accepted: int = 0  # Σ of those kept (the model's own greedy choice there)
    spec_proposer_seconds: float = 0.0  # Σ seconds the proposer spent

    def observe(self, output: StepOutput) -> None:
        self.model = output.model
        self.calls += 1
        self.generated_tokens += output.tokens
        self.prompt_tokens += output.prompt_tokens
        self.prefill_tokens += output.prefill_tokens
        self.prefill_seconds += output.prefill_seconds
        self.decode_seconds += output.decode_seconds
        self.kept_tokens += _kept_tokens(output)
        stats = output.extra.get("speculation")
        if isinstance(stats, dict):
            self.spec_rounds += int(stats.get("rounds", 0))
            self.spec_proposed += int(stats.get("proposed", 0))
            self.spec_accepted += int(stats.get("accepted", 0))
            self.spec_proposer_seconds += float(stats.get("proposer_seconds", 0.0))

    def observe_verification(self, verification: Verification) -> None:
        self.model = verification.model
        self.verify_calls += 1
        self.verify_seconds += verification.seconds
        self.verify_prefill_tokens += verification.prefill_tokens

    @property
    def seconds(self) -> float:
        """Wall seconds of every call of this role: step calls and verifications."""
        return self.prefill_seconds + self.decode_seconds + self.verify_seconds

    @property
    def decode_tokens_per_second(self) -> float | None:
        """Tokens actually decoded (kept prefixes excluded) per decode second."""
        decoded = self.generated_tokens - self.kept_tokens
        return decoded / self.decode_seconds if self.decode_seconds > 0 else None

    @property
    def kv_reuse_rate(self) -> float | None:
        """Share of context tokens served from the KV cache: 1 − prefill_tokens / prompt_tokens."""
        return 1 - self.prefill_tokens / self.prompt_tokens if self.prompt_tokens else None


# "cancelled": the caller's ``should_stop`` asked the engine to stop (client gone, timeout, stop sequence)
StopReason = Literal["eos", "answer", "max_steps", "max_tokens", "repetition", "cancelled"]


@dataclass(slots=True)
class SolveTrace:
    """Everything about one solve."""

    question: str
    policy: str  # policy description, e.g. "random(p=0.5)"
    steps: list[StepRecord] = field(default_factory=list)
    usage: dict[Role, ModelUsage] = field(
        default_factory=lambda: {"draft": ModelUsage(), "target": ModelUsage()}
    )
    policy_seconds: float = 0.0  # Σ StepRecord.policy_seconds (PRM / router time; part of the latency)
    wall_seconds: float = 0.0  # end-to-end wall time of the solve, diagnostics included
    diagnostic_seconds: float = 0.0  # Σ diagnostic seconds of every decision, dropped steps too (not latency)
    stop_reason: StopReason | None = None
    answer: str | None = None  # extracted final answer (last \boxed{}, with fallbacks)
    # the step separator the solve ran with (the engine's ``EngineConfig.step.separator``); joins
    # ``solution``
    separator: str = "\n\n"

    @property
    def solution(self) -> str:
        """The accepted steps joined by the separator the solve ran with."""
        return self.separator.join(step.text for step in self.steps)

    @property
    def acceptance_rate(self) -> float | None:
        """Share of accepted steps written by the draft (the paper's step-level acceptance rate)."""
        if not self.steps:
            return None
        return sum(1 for s in self.steps if s.role == "draft") / len(self.steps)

    @property
    def token_acceptance_rate(self) -> float | None:
        """Share of the solution's tokens written by the draft (the official code's token-weighted rate)."""
        total = sum(s.tokens for s in self.steps)
        if not total:
            return None
        return sum(s.tokens for s in self.steps if s.role == "draft") / total

    @property
    def target_call_rate(self) -> float | None:
        """Target step calls per step of the solution (1 − acceptance rate when no policy probes and
        no step was dropped: a step dropped by the loop guard, or an empty final step, still counts its
        call)."""
        if not self.steps:
            return None
        return self.usage["target"].calls / len(self.steps)

    @property
    def wall_latency_seconds(self) -> float:
        """What this solve cost its user, measured: wall time less diagnostic-only work (seconds).

        Not the evaluation records' ``latency_seconds``
        (:attr:`arbitrage.evaluation.records.ProblemRecord.latency_seconds`), which is a *sum of measured
        call costs* (draft + target + policy seconds) and stays defined when calls are replayed from a
        cache; this one is the wall clock of this solve, and shrinks when calls are replayed.
        """
        return max(0.0, self.wall_seconds - self.diagnostic_seconds)

    @property
    def kept_tokens(self) -> int:
        """Decode tokens the target saved by keeping verified draft prefixes (Σ over its step calls,
        a step dropped by the loop guard included, like every cost)."""
        return self.usage["target"].kept_tokens

    @property
    def escalations_with_rewards(self) -> int:
        """Escalated steps whose draft and target rewards are both known."""
        return sum(1 for s in self.steps if s.decision.wasted is not None)

    @property
    def wasted_escalations(self) -> int | None:
        """Escalated steps whose target reward did not beat the draft's (Δ ≤ 0); None when no
        escalated step has both rewards (RSD without ``--diagnose``)."""
        if not self.escalations_with_rewards:
            return None
        return sum(1 for s in self.steps if s.decision.wasted)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by ``--json``, eval records and the server)."""
        usage = {
            role: {**dataclasses.asdict(u), "seconds": u.seconds, "kv_reuse_rate": u.kv_reuse_rate}
            for role, u in self.usage.items()
        }
        return {
            "question": self.question,
            "policy": self.policy,
            "answer": self.answer,
            "stop_reason": self.stop_reason,
            "wall_seconds": self.wall_seconds,
            "policy_seconds": self.policy_seconds,
            "diagnostic_seconds": self.diagnostic_seconds,
            "wall_latency_seconds": self.wall_latency_seconds,
            "wasted_escalations": self.wasted_escalations,
            "escalations_with_rewards": self.escalations_with_rewards,
            "num_steps": len(self.steps),
            "acceptance_rate": self.acceptance_rate,
            "token_acceptance_rate": self.token_acceptance_rate,
            "target_call_rate": self.target_call_rate,
            "kept_tokens": self.kept_tokens,
            "usage": usage,
            "steps": [_step_dict(s) for s in self.steps],
            "separator": self.separator,
            "solution": self.solution,
        }


def _output_dict(output: StepOutput | None) -> dict[str, Any] | None:
    if output is None:
        return None
    data = dataclasses.asdict(output)
    data["finish_reason"] = str(output.finish_reason)
    data["token_logprobs"] = [round(x, 5) for x in output.token_logprobs]
    data["token_entropies"] = [round(x, 5) for x in output.token_entropies]
    return data


def _decision_dict(decision: Decision) -> dict[str, Any]:
    data = dataclasses.asdict(decision)
    data["advantage"] = decision.advantage
    data["wasted"] = decision.wasted
    return data


def _probe_dict(probe: Probe | None) -> dict[str, Any] | None:
    if probe is None:
        return None
    return {
        "tokens": probe.tokens,
        "written": probe.output.tokens,
        "text": probe.output.text,
        "whole_step": probe.whole_step,
        "agreed": probe.agreed,
        "seconds": probe.output.seconds,
        "verification": verification_summary(probe.verification),
    }


def _step_dict(step: StepRecord) -> dict[str, Any]:
    decision = _decision_dict(step.decision)
    return {
        "index": step.index,
        "role": step.role,
        "model": step.model,
        "text": step.text,
        "tokens": step.tokens,
        "finish_reason": str(step.finish_reason),
        "escalated": step.escalated,
        "decision": decision,
        "policy_seconds": step.policy_seconds,
        "diagnostic_seconds": step.diagnostic_seconds,
        "extra_target_samples": step.extra_target_samples,
        "draft": _output_dict(step.draft),
        "target": _output_dict(step.target),
        "kept_tokens": step.kept_tokens,
        "verification": verification_summary(step.verification),
        "decision_point": step.decision.point,
        "early_decisions": [_decision_dict(d) for d in step.early],
        "probe": _probe_dict(step.probe),
    }


def verification_summary(verification: Verification | None) -> dict[str, Any] | None:
    """The JSON summary of a verification (its figures, not its token arrays)."""
    if verification is None:
        return None
    return {
        "model": verification.model,
        "tokens": verification.n,
        "agreement": verification.agreement,
        "mean_logprob": round(verification.mean_logprob, 5),
        "min_logprob": round(verification.min_logprob, 5),
        "first_divergence": verification.first_divergence,
        "prefill_tokens": verification.prefill_tokens,
        "seconds": verification.seconds,
    }
