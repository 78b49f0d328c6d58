"""The router role: predict, from the context and the draft step alone, whether the target would do better.

A router maps one decision to an escalation score ``ŷ`` in [0, 1]; the ``router`` policy escalates
when ``ŷ > τ``. Higher means "the target's step is more likely (or by more) better than the draft's":
the label scheme (:mod:`arbitrage.router.labels`) says exactly how class probabilities become ``ŷ``.

A router sees what the engine has at decision time and nothing more: the question, the accepted
steps so far with who wrote each (the *routing history*), and the draft's step with its token
logprobs and entropies. :class:`RouterExample` is that input, built the same way from a collected
:class:`~arbitrage.router.data.StepPair` row (training, evaluation) and from the engine's
``StepRecord`` history and ``StepOutput`` (routing), so train and serve can't drift apart.

Routers with *target-side* inputs (``train-router --inputs target|both``) also read the target's
verification of the draft step (:class:`VerificationSummary`): collected in the row's ``t_*`` columns,
and at routing time computed by the routing policy (the target teacher-forced on the draft's step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from arbitrage.errors import RouterError

if TYPE_CHECKING:
    import numpy as np

    from arbitrage.backends.base import StepOutput, Verification
    from arbitrage.router.labels import LabelScheme
    from arbitrage.trace import StepRecord


@dataclass(frozen=True, slots=True)
class VerificationSummary:
    """The target's view of the draft step, as collection stores it and target-side routers read it."""

    tokens: int  # n: verified tokens (the step and its separator, in the target's vocabulary)
    mean_logprob: float  # mean log π_target (nats) over the verified tokens
    min_logprob: float  # lowest of them
    agreement: float  # share of verified tokens that are the target's greedy choice
    first_divergence: int | None  # first token the target would not write; None: it writes this step
    end_is_eos: bool  # the target's greedy choice after the step ends the answer
    gsi: float  # mean_logprob − mean draft logprob (GSI's per-token tilt; mean_logprob without them)

    @classmethod
    def from_verification(cls, v: Verification, draft_logprobs: Sequence[float]) -> VerificationSummary:
        """From a backend's :class:`~arbitrage.backends.base.Verification` and the draft's logprobs."""
        draft_mean = sum(draft_logprobs) / len(draft_logprobs) if draft_logprobs else 0.0
        return cls(
            tokens=v.n,
            mean_logprob=v.mean_logprob,
            min_logprob=v.min_logprob,
            agreement=v.agreement,
            first_divergence=v.first_divergence,
            end_is_eos=bool(v.end_is_eos),
            gsi=v.mean_logprob - draft_mean,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> VerificationSummary | None:
        """From a collected row's ``t_*`` columns (None where the row has no verification)."""
        if row.get("t_tokens") is None or row.get("t_mean_logprob") is None:
            return None
        divergence = row.get("t_first_divergence")
        return cls(
            tokens=int(row["t_tokens"]),
            mean_logprob=float(row["t_mean_logprob"]),
            min_logprob=float(row["t_min_logprob"]),
            agreement=float(row["t_agreement"]),
            first_divergence=None if divergence is None else int(divergence),
            end_is_eos=bool(row.get("t_end_is_eos")),
            gsi=float(row["gsi"]),
        )


@dataclass(frozen=True, slots=True)
class RouterExample:
    """Everything a router may read for one decision (the same at training and at routing time)."""

    question: str
    steps: tuple[str, ...]  # [step_index] accepted step texts before this one
    roles: tuple[str, ...]  # [step_index] "draft" / "target": who wrote each earlier step
    draft_text: str  # the draft's proposed step
    draft_logprobs: tuple[float, ...] = ()  # [draft tokens] natural-log probability of each token
    draft_entropies: tuple[float, ...] = ()  # [draft tokens] next-token entropy (nats) at each token
    draft_tokens: int = 0  # generated tokens of the draft step
    draft_finish: str = "step"  # "step" | "eos" | "length"
    verification: VerificationSummary | None = None  # the target's view of the step (target-side inputs)

    @property
    def step_index(self) -> int:
        """0-based index of the step being decided."""
        return len(self.steps)

    @classmethod
    def from_pair(cls, row: Mapping[str, Any]) -> RouterExample:
        """From a collected row (a :class:`StepPair` as a dict, as ``read_pairs`` returns it)."""
        steps = tuple(row["context"] or ())
        roles = tuple(row["history"] or ())
        if len(roles) != len(steps):
            raise RouterError(
                f"Row {row.get('question_id')!r} step {row.get('step_index')}: {len(steps)} context steps "
                f"but {len(roles)} history entries"
            )
        return cls(
            question=row["question"],
            steps=steps,
            roles=roles,
            draft_text=row["z_d"],
            draft_logprobs=tuple(row["draft_logprobs"] or ()),
            draft_entropies=tuple(row["draft_entropies"] or ()),
            draft_tokens=int(row["draft_tokens"]),
            draft_finish=str(row["draft_finish"]),
            verification=VerificationSummary.from_row(row),
        )

    @classmethod
    def from_step(
        cls,
        question: str,
        history: Sequence[StepRecord],
        draft_step: StepOutput,
        verification: VerificationSummary | None = None,
    ) -> RouterExample:
        """From the engine's view of a decision: accepted step records and the draft's output (and, for
        target-side routers, the target's verification of it)."""
        return cls(
            question=question,
            steps=tuple(s.text for s in history),
            roles=tuple(s.role for s in history),
            draft_text=draft_step.text,
            draft_logprobs=tuple(draft_step.token_logprobs),
            draft_entropies=tuple(draft_step.token_entropies),
            draft_tokens=draft_step.tokens,
            draft_finish=str(draft_step.finish_reason),
            verification=verification,
        )


@runtime_checkable
class Router(Protocol):
    """Scores draft steps: ``ŷ`` in [0, 1], higher = escalate sooner."""

    kind: str  # "features" | "lm"
    scheme: LabelScheme  # how the router's labels were made and how its outputs become ŷ
    annotate: bool  # whether the routing history is part of the input

    def score(self, question: str, history: Sequence[StepRecord], draft_step: StepOutput) -> float:
        """ŷ for one decision (``history``: the accepted steps so far, oldest first)."""
        ...

    def score_batch(self, examples: Sequence[RouterExample]) -> np.ndarray:
        """ŷ for many decisions at once: ``[len(examples)]`` floats in [0, 1]."""
        ...


@runtime_checkable
class SavableRouter(Router, Protocol):
    """A router kind that :func:`arbitrage.router.store.save_router` can write to a folder."""

    def config(self) -> dict[str, Any]:
        """Kind-specific settings recorded in the router's config (features list, backbone...)."""
        ...

    def save_weights(self, folder: Path) -> None:
        """Write the weights into ``folder`` (an empty folder that becomes the saved router)."""
        ...
