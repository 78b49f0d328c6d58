"""Datasets, grading, summaries and the resumable runner (scripted engine, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.engine import Engine
from arbitrage.errors import ConfigError
from arbitrage.evaluation.datasets import Problem, load_dataset, load_file, select
from arbitrage.evaluation.runner import run_eval
from arbitrage.evaluation.summary import percentile, summarize, wilson_interval
from arbitrage.grading import grade
from arbitrage.policies import DraftOnlyPolicy, RandomPolicy

CASES = json.loads((Path(__file__).parents[1] / "data" / "grading_cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[f"{c['solution'][:25]}|{c['gold']}" for c in CASES])
def test_grading(case: dict) -> None:
    assert grade(case["solution"], case["gold"]).correct is case["correct"]


def test_every_named_dataset_loads() -> None:
    sizes = {"gsm8k": 1319, "math500": 500, "olympiadbench": 675, "aime24": 30, "amc23": 40}
    for name, size in sizes.items():
        report = load_dataset(name)
        assert len(report.problems) == size and not report.skipped
        assert all(p.question and p.answer for p in report.problems)
    gsm = load_dataset("gsm8k").problems[0]
    assert gsm.answer == "18" and gsm.dataset == "gsm8k"
    assert load_dataset("amc23").problems[0].answer == "27"


def test_malformed_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"problem": "1+1?", "final_answer": ["2"]}\n'
        "{not json\n"
        '{"problem": "no answer here"}\n'
        "\n"
        '["a list"]\n'
        '{"problem": "2+2?", "final_answer": ["4"]}\n'
    )
    report = load_file(path)
    assert [p.answer for p in report.problems] == ["2", "4"]
    assert [s.split(": ")[0] for s in report.skipped] == [f"{path}:2", f"{path}:3", f"{path}:5"]


def test_field_detection_and_explicit_fields(tmp_path: Path) -> None:
    path = tmp_path / "custom.jsonl"
    path.write_text('{"q": "What is 3*3?", "gold": "9", "answer": "ignored"}\n')
    assert load_file(path, question_field="q").problems[0].answer == "ignored"
    assert load_file(path, question_field="q", answer_field="gold").problems[0].answer == "9"
    with pytest.raises(ConfigError, match="question field"):
        load_file(path)
    gsm_style = tmp_path / "gsm.jsonl"
    gsm_style.write_text('{"question": "x?", "answer": "work\\n#### 1,000"}\n')
    assert load_file(gsm_style).problems[0].answer == "1000"


def test_missing_file_and_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_file(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError, match="Unknown dataset"):
        load_dataset("mnist")


def test_select_validates() -> None:
    problems = [Problem(str(i), f"q{i}", "1", "t") for i in range(5)]
    assert [p.id for p in select(problems, 1, 2)] == ["1", "2"]
    with pytest.raises(ConfigError):
        select(problems, -1)
    with pytest.raises(ConfigError):
        select(problems, 0, 0)


def test_wilson_and_percentile() -> None:
    lo, hi = wilson_interval(12, 25)
    assert lo == pytest.approx(0.3003, abs=1e-4) and hi == pytest.approx(0.6650, abs=1e-4)  # by hand
    assert wilson_interval(0, 0) == (0.0, 0.0)
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9
    assert percentile([5.0], 90) == 5.0


def scripted_engine(policy=None) -> Engine:  # type: ignore[no-untyped-def]
    def draft_script(ctx):  # type: ignore[no-untyped-def]
        from arbitrage.backends.base import FinishReason

        n = int(ctx.question.split()[1])
        if len(ctx.steps) < 2:
            return f"working on {n} step {len(ctx.steps)}", FinishReason.STEP
        return f"so \\boxed{{{n * 2}}}", FinishReason.EOS

    def target_script(ctx):  # type: ignore[no-untyped-def]
        from arbitrage.backends.base import FinishReason

        n = int(ctx.question.split()[1])
        return (f"target says \\boxed{{{n * 2 + 1}}}", FinishReason.EOS)

    return Engine(
        ScriptedGenerator("d", draft_script),
        ScriptedGenerator("t", target_script),
        policy or DraftOnlyPolicy(),
    )


def problems(n: int) -> list[Problem]:
    return [Problem(str(i), f"double {i} please", str(i * 2), "toy") for i in range(n)]


def test_run_eval_records_and_summarises(tmp_path: Path) -> None:
    summary = run_eval(problems(4), scripted_engine(), tmp_path, {"policy": "draft"}, show_progress=False)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").open()]
    assert [r["id"] for r in records] == ["0", "1", "2", "3"]
    assert all(r["correct"] for r in records)
    assert summary.accuracy == 1.0 and summary.acceptance_rate == 1.0
    assert summary.steps_mean == 3
    assert json.loads((tmp_path / "summary.json").read_text())["correct"] == 4


def test_run_eval_resumes_without_losing_or_duplicating(tmp_path: Path) -> None:
    config = {"policy": "draft"}
    run_eval(problems(2), scripted_engine(), tmp_path, config, show_progress=False)
    with (tmp_path / "records.jsonl").open("a") as fh:
        fh.write('{"id": "2", "trunc')  # a line cut by a kill
    solved: list[str] = []
    summary = run_eval(problems(5), scripted_engine(), tmp_path, config,
                       on_record=lambda r: solved.append(r.id), show_progress=False)  # fmt: skip
    assert solved == ["2", "3", "4"]
    ids = [json.loads(line)["id"] for line in (tmp_path / "records.jsonl").open()]
    assert ids == ["0", "1", "2", "3", "4"]
    assert summary.problems == 5


def test_run_eval_refuses_a_different_configuration(tmp_path: Path) -> None:
    run_eval(problems(1), scripted_engine(), tmp_path, {"policy": "draft"}, show_progress=False)
    with pytest.raises(ConfigError, match="different configuration"):
        run_eval(problems(1), scripted_engine(), tmp_path, {"policy": "target"}, show_progress=False)


def test_summary_counts_escalations_and_costs(tmp_path: Path) -> None:
    summary = run_eval(problems(6), scripted_engine(RandomPolicy(0.5, seed=2)), tmp_path,
                       {"policy": "random"}, show_progress=False)  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").open()]
    escalated = sum(r["escalations"] for r in records)
    assert summary.escalations == escalated > 0
    assert summary.target_call_rate == pytest.approx(escalated / sum(r["steps"] for r in records))
    wrong = [r for r in records if "T" in r["route"]]
    assert all(not r["correct"] for r in wrong if r["route"].endswith("T"))
    assert summarize(records, "random") == summary


def test_concurrent_eval_and_failed_problems_rerun(tmp_path: Path) -> None:
    from arbitrage.backends.base import FinishReason, StepContext
    from arbitrage.errors import BackendError

    broken = {"2"}

    def script(ctx: StepContext) -> tuple[str, FinishReason]:
        n = ctx.question.split()[1]
        if n in broken:
            raise BackendError("server at http://127.0.0.1:1 is unreachable")
        return f"\\boxed{{{int(n) * 2}}}", FinishReason.EOS

    engine = Engine(ScriptedGenerator("d", script), ScriptedGenerator("t", script), DraftOnlyPolicy())
    first = run_eval(problems(5), engine, tmp_path, {"policy": "draft"}, show_progress=False, concurrency=3)
    assert first.errors == 1 and first.correct == 4
    failed = [r for r in map(json.loads, (tmp_path / "records.jsonl").open()) if r["id"] == "2"]
    assert "unreachable" in failed[0]["error"]
    broken.clear()
    rerun: list[str] = []
    second = run_eval(problems(5), engine, tmp_path, {"policy": "draft"}, show_progress=False,
                      on_record=lambda r: rerun.append(r.id))  # fmt: skip
    assert rerun == ["2"] and second.correct == 5 and second.errors == 0


def test_grading_off_the_main_thread_matches_and_is_time_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from arbitrage import grading

    results: list[object] = []

    def worker() -> None:  # as collection and rollout workers grade
        results.append(grade("so \\boxed{\\frac{1}{2}}", "0.5").correct)
        results.append(grade("so \\boxed{3}", "0.5").correct)
        release = threading.Event()
        monkeypatch.setattr(
            grading, "_match", lambda *args: release.wait() or True
        )  # a comparison that hangs
        results.append(grading.grade_answer("1", "1", timeout=0))
        release.set()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert results[:2] == [True, False]
    hung = results[2]
    assert isinstance(hung, grading.Grade) and not hung.correct and "TimeoutError" in (hung.error or "")
    assert not grading.answers_match(None, "1")
