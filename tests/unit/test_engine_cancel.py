"""Engine.solve(should_stop=...): the step loop stops at the next step boundary (used by the server)."""

from __future__ import annotations

from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.engine import Engine
from arbitrage.policies import DraftOnlyPolicy, TargetOnlyPolicy
from arbitrage.trace import StepRecord

STEPS = ["one", "two", "three", "four", "five"]


def test_should_stop_before_any_step_calls_no_model() -> None:
    draft, target = ScriptedGenerator("d", STEPS), ScriptedGenerator("t", STEPS)
    trace = Engine(draft, target, DraftOnlyPolicy()).solve("q", should_stop=lambda: True)
    assert trace.steps == []
    assert trace.stop_reason == "cancelled"
    assert trace.answer is None
    assert draft.calls == [] and target.calls == []


def test_should_stop_after_two_steps_keeps_them() -> None:
    draft, target = ScriptedGenerator("d", STEPS), ScriptedGenerator("t", STEPS)
    seen: list[StepRecord] = []
    trace = Engine(draft, target, DraftOnlyPolicy()).solve(
        "q", on_step=seen.append, should_stop=lambda: len(seen) >= 2
    )
    assert [s.text for s in trace.steps] == ["one", "two"]
    assert trace.stop_reason == "cancelled"
    assert len(draft.calls) == 2  # the third step was never started


def test_should_stop_is_consulted_for_target_only_decoding_too() -> None:
    draft, target = ScriptedGenerator("d", STEPS), ScriptedGenerator("t", STEPS)
    checks: list[int] = []

    def stop() -> bool:
        checks.append(len(target.calls))
        return len(target.calls) >= 3

    trace = Engine(draft, target, TargetOnlyPolicy()).solve("q", should_stop=stop)
    assert len(trace.steps) == 3
    assert checks == [0, 1, 2, 3]
    assert draft.calls == []


def test_without_should_stop_the_solve_is_unchanged() -> None:
    draft, target = ScriptedGenerator("d", STEPS), ScriptedGenerator("t", STEPS)
    trace = Engine(draft, target, DraftOnlyPolicy()).solve("q", should_stop=lambda: False)
    assert [s.text for s in trace.steps] == STEPS
    assert trace.stop_reason == "eos"
