"""Engine control logic on scripted backends: no model involved."""

from __future__ import annotations

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepParams
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.cli.options import flag_errors
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ConfigError
from arbitrage.policies import DraftOnlyPolicy, RandomPolicy, StepView, TargetOnlyPolicy
from arbitrage.trace import Decision

DRAFT_STEPS = ["d1 first", "d2 second", "d3 third", "d4 so \\boxed{4}"]
TARGET_STEPS = ["t1 first step", "t2 second step", "t3 third step", "t4 so \\boxed{5}"]


def pair() -> tuple[ScriptedGenerator, ScriptedGenerator]:
    return ScriptedGenerator("draft-m", DRAFT_STEPS), ScriptedGenerator("target-m", TARGET_STEPS)


class AlwaysEscalate:
    """Escalates every step but, unlike target-only, still pays for the draft's proposal."""

    name = "always"
    skip_draft = False

    def decide(self, view: StepView) -> Decision:
        return Decision(escalate=True)


class PeekThenDecide:
    """Asks for the target step (as the oracle does), then escalates on even steps only."""

    name = "peek"
    skip_draft = False

    def decide(self, view: StepView) -> Decision:
        target = view.target_step()
        return Decision(escalate=len(view.history) % 2 == 0, info={"target_tokens": target.tokens})


def test_draft_only_uses_draft_text_and_never_calls_target() -> None:
    draft, target = pair()
    trace = Engine(draft, target, DraftOnlyPolicy()).solve("q?")
    assert [s.text for s in trace.steps] == DRAFT_STEPS
    assert all(s.role == "draft" and s.model == "draft-m" for s in trace.steps)
    assert target.calls == []
    assert trace.acceptance_rate == 1.0
    assert trace.target_call_rate == 0.0
    assert trace.answer == "4"
    assert trace.stop_reason == "eos"  # the script ends its last step with EOS


def test_boxed_answer_stops_before_further_steps() -> None:
    steps = [("a", FinishReason.STEP), ("so \\boxed{9}", FinishReason.STEP), ("extra", FinishReason.STEP)]
    draft = ScriptedGenerator("d", steps)
    trace = Engine(draft, draft, DraftOnlyPolicy()).solve("q")
    assert trace.stop_reason == "answer"
    assert [s.text for s in trace.steps] == ["a", "so \\boxed{9}"]
    assert trace.answer == "9"


def test_target_only_never_calls_draft() -> None:
    draft, target = pair()
    trace = Engine(draft, target, TargetOnlyPolicy()).solve("q?")
    assert [s.text for s in trace.steps] == TARGET_STEPS
    assert draft.calls == []
    assert all(s.draft is None for s in trace.steps)
    assert trace.acceptance_rate == 0.0
    assert trace.answer == "5"


def test_always_escalate_equals_target_only_and_never_equals_draft_only() -> None:
    d1, t1 = pair()
    escalated = Engine(d1, t1, AlwaysEscalate()).solve("q?")
    d2, t2 = pair()
    target_only = Engine(d2, t2, TargetOnlyPolicy()).solve("q?")
    assert escalated.solution == target_only.solution
    assert len(d1.calls) == len(escalated.steps)  # the draft was still asked every step
    d3, t3 = pair()
    assert Engine(d3, t3, DraftOnlyPolicy()).solve("q?").solution == "\n\n".join(DRAFT_STEPS)


def test_contexts_carry_the_accepted_steps_to_both_models() -> None:
    draft, target = pair()
    Engine(draft, target, PeekThenDecide()).solve("q?")
    # step 0 escalated (target text kept), step 1 accepted (draft text kept), ...
    assert draft.calls[1].steps == ("t1 first step",)
    assert draft.calls[2].steps == ("t1 first step", "d2 second")
    assert target.calls[2].steps == ("t1 first step", "d2 second")


def test_target_step_requested_by_policy_is_reused_not_regenerated() -> None:
    draft, target = pair()
    trace = Engine(draft, target, PeekThenDecide()).solve("q?")
    assert len(target.calls) == len(trace.steps)  # one target call per step, escalated or not
    assert [s.role for s in trace.steps] == ["target", "draft", "target", "draft"]
    assert all(s.target is not None for s in trace.steps)
    assert trace.usage["target"].calls == len(trace.steps)
    assert trace.acceptance_rate == 0.5


def test_random_policy_is_reproducible_and_mixes_models() -> None:
    runs = []
    for _ in range(2):
        draft, target = pair()
        runs.append(Engine(draft, target, RandomPolicy(0.5, seed=3)).solve("What is 2+2?"))
    assert [s.role for s in runs[0].steps] == [s.role for s in runs[1].steps]
    p0 = RandomPolicy(0.0)
    p1 = RandomPolicy(1.0)
    draft, target = pair()
    assert Engine(draft, target, p0).solve("x").acceptance_rate == 1.0
    draft, target = pair()
    assert Engine(draft, target, p1).solve("x").acceptance_rate == 0.0


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_random_policy_rejects_invalid_probability(p: float) -> None:
    with pytest.raises(ConfigError, match="--p"), flag_errors():  # the CLI's words
        RandomPolicy(p)
    with pytest.raises(ConfigError, match=r"^p must be within"):  # the library's
        RandomPolicy(p)


def test_eos_stops_and_an_empty_final_step_is_not_kept() -> None:
    draft = ScriptedGenerator(
        "d", [("a", FinishReason.STEP), ("b", FinishReason.STEP), ("", FinishReason.EOS)]
    )
    trace = Engine(draft, draft, DraftOnlyPolicy(), EngineConfig(stop_on_boxed=False)).solve("q")
    assert [s.text for s in trace.steps] == ["a", "b"]
    assert trace.stop_reason == "eos"


def test_max_steps_and_max_tokens() -> None:
    endless = ScriptedGenerator("d", lambda ctx: (f"step number {len(ctx.steps)}", FinishReason.STEP))
    trace = Engine(endless, endless, DraftOnlyPolicy(), EngineConfig(max_steps=5)).solve("q")
    assert len(trace.steps) == 5 and trace.stop_reason == "max_steps"
    trace = Engine(endless, endless, DraftOnlyPolicy(), EngineConfig(max_total_tokens=7)).solve("q")
    assert trace.stop_reason == "max_tokens"
    assert sum(s.tokens for s in trace.steps) >= 7
    assert len(trace.steps) == 3  # 3 tokens a step


def test_repeated_step_loop_guard() -> None:
    looping = ScriptedGenerator("d", lambda ctx: ("I am stuck.", FinishReason.STEP))
    trace = Engine(looping, looping, DraftOnlyPolicy(), EngineConfig(max_step_repeats=2)).solve("q")
    assert trace.stop_reason == "repetition"
    assert [s.text for s in trace.steps] == ["I am stuck.", "I am stuck."]


def test_step_token_cap_is_reported_as_length() -> None:
    draft = ScriptedGenerator("d", ["one two three four five six", "\\boxed{1}"])
    config = EngineConfig(step=StepParams(max_step_tokens=3))
    trace = Engine(draft, draft, DraftOnlyPolicy(), config).solve("q")
    assert trace.steps[0].finish_reason == FinishReason.LENGTH
    assert trace.steps[0].tokens == 3


def test_usage_and_trace_dict() -> None:
    draft, target = pair()
    trace = Engine(draft, target, PeekThenDecide()).solve("q?")
    data = trace.to_dict()
    assert data["num_steps"] == 4
    assert data["usage"]["draft"]["calls"] == 4
    assert data["usage"]["target"]["generated_tokens"] == sum(len(s.split()) for s in TARGET_STEPS)
    assert data["steps"][0]["decision"]["info"] == {"target_tokens": 3}
    assert data["steps"][0]["role"] == "target"
    assert data["token_acceptance_rate"] == pytest.approx((2 + 3) / (3 + 2 + 3 + 3))


def test_on_step_streams_each_accepted_step() -> None:
    draft, target = pair()
    seen: list[int] = []
    Engine(draft, target, DraftOnlyPolicy()).solve("q", on_step=lambda r: seen.append(r.index))
    assert seen == [0, 1, 2, 3]


def test_policy_seconds_exclude_target_generation() -> None:
    slow_target = ScriptedGenerator("t", TARGET_STEPS, seconds_per_token=10.0)
    draft = ScriptedGenerator("d", DRAFT_STEPS)
    trace = Engine(draft, slow_target, PeekThenDecide()).solve("q")
    assert trace.policy_seconds < 1.0  # simulated target seconds are not in the policy's time
    assert trace.usage["target"].seconds == pytest.approx(10.0 * 12)


@pytest.mark.parametrize("kwargs", [{"max_steps": 0}, {"max_total_tokens": -1}, {"max_step_repeats": 0}])
def test_invalid_engine_limits(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        EngineConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"max_step_tokens": 0}, {"separator": ""}, {"temperature": -1}, {"top_p": 0}]
)
def test_invalid_step_params(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        StepParams(**kwargs)


def test_empty_question_is_rejected() -> None:
    draft, target = pair()
    with pytest.raises(ConfigError, match="empty"):
        Engine(draft, target, DraftOnlyPolicy()).solve("   ")


def test_scripted_context_type() -> None:
    gen = ScriptedGenerator("d", ["x"])
    out = gen.generate_step(StepContext("q"), StepParams())
    assert out.finish_reason == FinishReason.EOS and out.text == "x"


class SeeSteps:
    """Records what the policy sees (the solution's steps and the history) and escalates odd steps."""

    name = "see"
    skip_draft = False

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, ...], int]] = []

    def decide(self, view: StepView) -> Decision:
        self.seen.append((view.steps, len(view.history)))
        return Decision(escalate=len(view.steps) % 2 == 1)


def test_an_empty_prefix_is_an_ordinary_solve() -> None:
    runs = []
    for kwargs in ({}, {"prefix": ()}, {"prefix": []}):
        draft, target = pair()
        policy = SeeSteps()
        trace = Engine(draft, target, policy).solve("q?", **kwargs)  # type: ignore[arg-type]
        runs.append(
            (
                [(s.index, s.text, s.role, s.finish_reason) for s in trace.steps],
                trace.stop_reason,
                trace.answer,
                policy.seen,
                draft.calls,
                target.calls,
            )
        )
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][0][0] == (0, "d1 first", "draft", FinishReason.STEP)


def test_a_solve_can_start_from_given_steps() -> None:
    draft, target = pair()
    policy = SeeSteps()
    trace = Engine(draft, target, policy).solve("q?", prefix=["given one"])
    # the models and the policy see the prefix as the solution's first steps; the trace holds the new ones
    assert draft.calls[0] == StepContext("q?", ("given one",))
    assert policy.seen[0] == (("given one",), 0)
    assert policy.seen[1] == (("given one", "t2 second step"), 1)
    assert [s.index for s in trace.steps] == [1, 2, 3]
    assert [s.text for s in trace.steps] == ["t2 second step", "d3 third", "t4 so \\boxed{5}"]
    assert trace.stop_reason == "eos" and trace.answer == "5"  # the scripted last step ends the answer


def test_prefix_limits_and_guards() -> None:
    # a prefix that already states its answer is finished
    draft, target = pair()
    trace = Engine(draft, target, DraftOnlyPolicy()).solve("q?", prefix=["x", "so \\boxed{3}"])
    assert trace.steps == [] and trace.stop_reason == "answer" and trace.answer == "3" and draft.calls == []
    # max_steps counts only the steps written now
    draft, target = pair()
    trace = Engine(draft, target, DraftOnlyPolicy(), EngineConfig(max_steps=1)).solve("q?", prefix=["a", "b"])
    assert len(trace.steps) == 1 and trace.stop_reason == "max_steps"
    # the loop guard counts the prefix's copies of a step
    loop = ScriptedGenerator("d", lambda ctx: ("same step", FinishReason.STEP))
    trace = Engine(loop, loop, DraftOnlyPolicy()).solve("q?", prefix=["Same  step"])
    assert [s.text for s in trace.steps] == ["same step"] and trace.stop_reason == "repetition"
    # without a boxed answer anywhere, the answer is read from the whole solution
    draft = ScriptedGenerator("d", lambda ctx: ("done", FinishReason.EOS))
    trace = Engine(draft, draft, DraftOnlyPolicy()).solve("q?", prefix=["the total is 42"])
    assert trace.answer == "42"


def test_solution_joins_steps_with_the_configured_separator() -> None:
    draft, target = pair()
    config = EngineConfig(step=StepParams(separator="\n"))
    trace = Engine(draft, target, DraftOnlyPolicy(), config).solve("q?")
    assert trace.separator == "\n"
    assert trace.solution == "\n".join(DRAFT_STEPS)
    assert trace.to_dict()["separator"] == "\n"
