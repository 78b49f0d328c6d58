"""solve_many: problems in flight together, results in order and as they finish, failures isolated."""

from __future__ import annotations

import threading

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.concurrent import ProblemResult, solve_many, summarise
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import BackendError, ConfigError
from arbitrage.policies import DraftOnlyPolicy, RandomPolicy


def answer_script(context: StepContext) -> tuple[str, FinishReason]:
    """Two steps per question; the second states the question's number as the answer."""
    number = context.question.split()[-1].rstrip("?")
    if not context.steps:
        return f"Look at {number}.", FinishReason.STEP
    return f"So the answer is \\boxed{{{number}}}.", FinishReason.EOS


class Gated(ScriptedGenerator):
    """A scripted draft whose first calls wait at a barrier: passes only if `parties` run at once."""

    def __init__(self, parties: int, timeout: float = 60) -> None:
        super().__init__("draft", answer_script)
        self.barrier = threading.Barrier(parties, timeout=timeout)
        self.gated = 0
        self.lock = threading.Lock()

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        with self.lock:
            gate = not context.steps and self.gated < self.barrier.parties
            self.gated += gate
        if gate:
            self.barrier.wait()  # BrokenBarrierError unless `parties` problems are in flight together
        return super().generate_step(context, params)


class Failing(ScriptedGenerator):
    """Fails on questions containing 'bad', like a server that dropped one request for good."""

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        if "bad" in context.question:
            raise BackendError("OpenAI-compatible server http://127.0.0.1:1/v1: connection refused")
        return super().generate_step(context, params)


QUESTIONS = [f"What is the number {n}?" for n in (3, 14, 15, 92, 65, 35)]


def engine(draft: ScriptedGenerator) -> Engine:
    return Engine(draft, ScriptedGenerator("target", answer_script), DraftOnlyPolicy(), EngineConfig())


def test_results_in_input_order_and_correct() -> None:
    results = solve_many(engine(ScriptedGenerator("draft", answer_script)), QUESTIONS, concurrency=3)
    assert [r.index for r in results] == list(range(len(QUESTIONS)))
    assert [r.trace.answer for r in results if r.trace] == ["3", "14", "15", "92", "65", "35"]
    assert all(r.ok and r.error is None and r.seconds > 0 for r in results)


@pytest.mark.parametrize("concurrency", [2, 4])
def test_problems_really_run_concurrently(concurrency: int) -> None:
    results = solve_many(engine(Gated(concurrency)), QUESTIONS[:concurrency], concurrency=concurrency)
    assert all(r.ok for r in results), [r.error for r in results]


def test_concurrency_one_runs_one_at_a_time() -> None:
    results = solve_many(engine(Gated(2, timeout=0.5)), QUESTIONS[:2], concurrency=1)
    assert not any(r.ok for r in results)  # the barrier needed two in flight: both waits broke
    assert {r.error_type for r in results} == {"BrokenBarrierError"}


def test_a_failing_problem_does_not_stop_the_others() -> None:
    questions = [*QUESTIONS[:2], "A bad question 7?", *QUESTIONS[2:4]]
    results = solve_many(engine(Failing("draft", answer_script)), questions, concurrency=2)
    assert [r.ok for r in results] == [True, True, False, True, True]
    failed = results[2]
    assert failed.trace is None and failed.error_type == "BackendError"
    assert failed.error is not None and "http://127.0.0.1:1/v1" in failed.error


def test_on_result_gets_every_result_on_the_calling_thread() -> None:
    seen: list[tuple[int, str]] = []

    def on_result(result: ProblemResult) -> None:
        seen.append((result.index, threading.current_thread().name))

    solve_many(
        engine(ScriptedGenerator("draft", answer_script)), QUESTIONS, concurrency=4, on_result=on_result
    )
    assert sorted(i for i, _ in seen) == list(range(len(QUESTIONS)))
    assert {name for _, name in seen} == {threading.current_thread().name}


def test_a_callback_failure_stops_the_run_but_hands_over_problems_in_flight() -> None:
    seen: list[int] = []

    def on_result(result: ProblemResult) -> None:
        seen.append(result.index)
        if len(seen) == 1:
            raise OSError("disk full")

    draft = ScriptedGenerator("draft", answer_script)
    with pytest.raises(OSError, match="disk full"):
        solve_many(engine(draft), QUESTIONS * 20, concurrency=2, on_result=on_result)
    assert len(seen) < len(QUESTIONS) * 20  # problems not started were cancelled
    assert len(draft.calls) < 2 * len(QUESTIONS) * 20


def test_factory_builds_one_engine_per_worker_and_closes_its_models() -> None:
    built: list[Engine] = []
    lock = threading.Lock()

    def factory() -> Engine:
        made = engine(ScriptedGenerator("draft", answer_script))
        with lock:
            built.append(made)
        return made

    results = solve_many(factory, QUESTIONS, concurrency=3)
    assert all(r.ok for r in results)
    assert 1 <= len(built) <= 3
    assert all(e.draft.closed and e.target.closed for e in built)  # type: ignore[attr-defined]


def test_shared_engine_is_left_open() -> None:
    shared = engine(ScriptedGenerator("draft", answer_script))
    solve_many(shared, QUESTIONS[:2], concurrency=2)
    assert not shared.draft.closed  # type: ignore[attr-defined]


def test_random_policy_is_order_independent_under_concurrency() -> None:
    def run(concurrency: int) -> list[list[str]]:
        eng = Engine(
            ScriptedGenerator("draft", answer_script),
            ScriptedGenerator("target", answer_script),
            RandomPolicy(0.5, seed=3),
        )
        return [
            [s.role for s in r.trace.steps]
            for r in solve_many(eng, QUESTIONS, concurrency=concurrency)
            if r.trace
        ]

    assert run(1) == run(4)


def test_summary_counts_throughput() -> None:
    results = solve_many(engine(Failing("draft", answer_script)), ["bad 1?", *QUESTIONS[:3]], concurrency=2)
    summary = summarise(results)
    assert (summary.problems, summary.failed) == (4, 1)
    assert summary.problems_per_second == pytest.approx(4 / summary.wall_seconds)
    ok = [r.seconds for r in results if r.ok]
    assert summary.mean_problem_seconds == pytest.approx(sum(ok) / 3)
    assert summarise([]).problems == 0


def test_bad_concurrency_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="concurrency must be >= 1"):
        solve_many(engine(ScriptedGenerator("draft", answer_script)), QUESTIONS, concurrency=0)


def test_empty_input() -> None:
    assert solve_many(engine(ScriptedGenerator("draft", answer_script)), [], concurrency=2) == []


class Logged(ScriptedGenerator):
    """A scripted draft that logs (question, step index) per call, and writes a different number of
    steps per question (the question's number modulo 3, plus 1), so a wave's problems end apart."""

    def __init__(self) -> None:
        super().__init__("draft", self.script)
        self.log: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    @staticmethod
    def script(context: StepContext) -> tuple[str, FinishReason]:
        number = int(context.question.split()[-1].rstrip("?"))
        if len(context.steps) < number % 3:
            return f"Step {len(context.steps)} of {number}.", FinishReason.STEP
        return f"So the answer is \\boxed{{{number}}}.", FinishReason.EOS

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        with self.lock:
            self.log.append((context.question, len(context.steps)))
        return super().generate_step(context, params)


def test_lockstep_advances_each_wave_one_step_at_a_time() -> None:
    draft = Logged()
    results = solve_many(engine(draft), QUESTIONS, concurrency=3, schedule="lockstep")
    assert [r.trace.answer for r in results if r.trace] == ["3", "14", "15", "92", "65", "35"]
    waves = [QUESTIONS[:3], QUESTIONS[3:]]
    order = [(waves[0] if q in waves[0] else waves[1], q, k) for q, k in draft.log]
    # every call of the first wave comes before any of the second
    assert [w is waves[0] for w, _, _ in order] == sorted((w is waves[0] for w, _, _ in order), reverse=True)
    for wave in waves:
        steps = [k for w, _, k in order if w is wave]
        assert steps == sorted(steps)  # no problem starts step k+1 before all of the wave did step k
        # and a problem that finished early does not hold the others up: each step is asked of exactly
        # the problems that still had it
        for k in set(steps):
            wanted = {q for q in wave if int(q.split()[-1].rstrip("?")) % 3 >= k}
            assert {q for w, q, s in order if w is wave and s == k} == wanted


def test_lockstep_survives_a_failing_problem() -> None:
    questions = ["What is the number 3?", "A bad question 4?", "What is the number 5?"]
    results = solve_many(
        engine(Failing("draft", answer_script)), questions, concurrency=3, schedule="lockstep"
    )
    assert [r.ok for r in results] == [True, False, True]


def test_unknown_schedule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="schedule"):
        solve_many(engine(ScriptedGenerator("draft", answer_script)), QUESTIONS, schedule="waves")  # type: ignore[arg-type]
