"""The OpenAI-compatible backend against a real llama.cpp server (llama-cpp-python's) with smollm2-135m."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams
from arbitrage.backends.llamacpp_server import ServerProcess
from arbitrage.backends.loader import load_generator
from arbitrage.backends.openai_http import OpenAIGenerator
from arbitrage.concurrent import ProblemResult, solve_many
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import BackendError
from arbitrage.policies import DraftOnlyPolicy, RandomPolicy

from .conftest import load

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"
GSM8K = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "gsm8k_test.jsonl"
# logprobs=off: the server runs without logits_all (see backends/llamacpp_server.py)
OPTIONS = "logprobs=off&retries=1&backoff=0.2"


def gsm8k(n: int) -> list[str]:
    if not GSM8K.is_file():
        pytest.skip(f"GSM8K test data not found at {GSM8K}")
    with GSM8K.open() as f:
        return [json.loads(next(f))["question"] for _ in range(n)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    with ServerProcess(MODEL, log) as srv:
        yield srv


def remote(server: ServerProcess, name: str = MODEL) -> OpenAIGenerator:
    gen = load_generator(f"openai:{server.base_url}#{MODEL}?{OPTIONS}&name={name}")
    assert isinstance(gen, OpenAIGenerator)
    return gen


def test_remote_steps_equal_local_llamacpp_steps(server: ServerProcess) -> None:
    """Same GGUF, same prompt, greedy: the server's steps and how they end match the local backend's.

    The server evaluates prompts the plain llama.cpp way (any cached prefix reused, one batch); the local
    backend does the same in its ``off`` determinism mode (its default ``aligned`` chunks change the
    numbers on batch-dependent builds)."""
    local = load(MODEL, determinism="off")
    gen = remote(server)
    try:
        assert gen.template.render(gen.prompt_style, QUESTION) == local.render_prompt(QUESTION)
        config = EngineConfig(step=StepParams(max_step_tokens=60), max_steps=4)
        remote_trace = Engine(gen, gen, DraftOnlyPolicy(), config).solve(QUESTION)
        local_trace = Engine(local, local, DraftOnlyPolicy(), config).solve(QUESTION)
    finally:
        local.close()
        gen.close()
    assert [(s.text, s.finish_reason) for s in remote_trace.steps] == [
        (s.text, s.finish_reason) for s in local_trace.steps
    ]
    assert [s.tokens for s in remote_trace.steps] == [s.tokens for s in local_trace.steps]
    assert remote_trace.stop_reason == local_trace.stop_reason


def test_separator_stop_aborts_the_request_on_the_server(server: ServerProcess) -> None:
    gen = remote(server)
    out = gen.generate_step(StepContext(QUESTION), StepParams(max_step_tokens=200))
    gen.close()
    if out.finish_reason != FinishReason.STEP:
        pytest.fail(f"expected the model to write a paragraph break, got {out.finish_reason}: {out.text!r}")
    assert "\n\n" not in out.text and out.text
    assert out.tokens < 200
    assert "Disconnected from client" in server.log()  # llama-cpp-python stopped generating


def test_verification_without_logits_all_is_a_clear_error(server: ServerProcess) -> None:
    """This server runs without logits_all: it has no prompt logprobs, and says so in one line."""
    gen = remote(server)
    draft = StepOutput(text="Tom has 8 apples.", finish_reason=FinishReason.STEP, model="d", tokens=5)
    try:
        with pytest.raises(BackendError, match="cannot verify steps: it refused echo with logprobs") as info:
            gen.verify_step(StepContext(QUESTION), draft, StepParams())
    finally:
        gen.close()
    assert "logits_all" in str(info.value) and "\n" not in str(info.value)


def test_cli_solve_with_remote_draft_and_target(server: ServerProcess) -> None:
    base = f"openai:{server.base_url}#{MODEL}?{OPTIONS}"
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "solve", QUESTION, "--draft", f"{base}&name=draft",
           "--target", f"{base}&name=target", "--policy", "random", "--p", "0.5", "--seed", "3",
           "--max-steps", "4", "--max-step-tokens", "48", "--json"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["policy"] == "random(p=0.5)" and trace["steps"]
    for step in trace["steps"]:
        assert step["model"] == step["role"]  # the spec's name= labels each role
        assert step["draft"]["extra"]["server"] == server.base_url
    assert trace["usage"]["draft"]["calls"] == len(trace["steps"])
    assert trace["usage"]["target"]["calls"] == sum(s["role"] == "target" for s in trace["steps"])


def test_cli_reports_an_unreachable_server_in_one_line() -> None:
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "solve", QUESTION,
           "--draft", "openai:http://127.0.0.1:9/v1#m?retries=0", "--target", "smollm2-135m"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: OpenAI-compatible server http://127.0.0.1:9/v1: listing models failed: connection refused; "
        "is the server running and the URL right?"
    ]


def test_solve_many_with_concurrency_4(server: ServerProcess) -> None:
    questions = gsm8k(4)
    gen = remote(server)
    engine = Engine(
        gen, gen, RandomPolicy(0.3, seed=1), EngineConfig(step=StepParams(max_step_tokens=40), max_steps=3)
    )
    finished: list[int] = []
    results = solve_many(engine, questions, concurrency=4, on_result=lambda r: finished.append(r.index))
    gen.close()
    assert [r.index for r in results] == [0, 1, 2, 3] and sorted(finished) == [0, 1, 2, 3]
    assert all(r.ok for r in results), [r.error for r in results]
    for result in results:
        assert result.trace is not None and result.trace.question == questions[result.index]
        assert 1 <= len(result.trace.steps) <= 3 and result.seconds > 0


def test_killed_server_fails_remaining_problems_clearly_and_a_rerun_resumes(tmp_path: Path) -> None:
    questions = gsm8k(4)
    srv = ServerProcess(MODEL, tmp_path / "server.log").start()
    kept: dict[int, ProblemResult] = {}
    try:
        gen = remote(srv)
        config = EngineConfig(step=StepParams(max_step_tokens=32), max_steps=2)
        engine = Engine(gen, gen, DraftOnlyPolicy(), config)

        def on_result(result: ProblemResult) -> None:
            if result.ok:
                kept[result.index] = result  # what a resumable writer would append to its file
            if result.index == 0:
                srv.kill()

        results = solve_many(engine, questions, concurrency=1, on_result=on_result)
        assert results[0].ok and list(kept) == [0]
        for failed in results[1:]:
            assert not failed.ok and failed.error_type == "BackendError"
            assert failed.error is not None
            assert srv.base_url in failed.error and "connection refused" in failed.error
        # the server comes back on the same address: run only the problems not kept
        restarted = ServerProcess(MODEL, tmp_path / "server2.log", port=srv.port).start()
        try:
            todo = [i for i in range(len(questions)) if i not in kept]
            rerun = solve_many(engine, [questions[i] for i in todo], concurrency=2)
            assert all(r.ok for r in rerun), [r.error for r in rerun]
            kept.update({todo[r.index]: r for r in rerun})
        finally:
            restarted.stop()
        gen.close()
    finally:
        srv.stop()
    assert sorted(kept) == [0, 1, 2, 3]
    assert all(kept[i].question == questions[i] for i in kept)


def test_cli_eval_concurrency_4_remote_and_resume_after_server_death(tmp_path: Path) -> None:
    """`arbitrage eval --concurrency 4` with both models remote; with the server gone the command fails
    in one clear line, and once it is back the same command resumes, keeping every finished problem.
    (A server dying mid-run is covered by the solve_many test above and the runner's unit tests.)"""
    srv = ServerProcess(MODEL, tmp_path / "server.log").start()
    base = f"openai:{srv.base_url}#{MODEL}?{OPTIONS}"
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "eval", "--dataset", "gsm8k", "--policy", "random",
           "--draft", f"{base}&name=draft", "--target", f"{base}&name=target", "--max-steps", "2",
           "--max-step-tokens", "32", "--concurrency", "4", "--out", str(out)]  # fmt: skip

    def records() -> list[dict]:
        return [json.loads(line) for line in (out / "records.jsonl").open()]

    try:
        first = subprocess.run([*cmd, "--limit", "4"], capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stderr
        assert sorted(r["id"] for r in records()) == ["0", "1", "2", "3"]
        assert all(r["error"] is None for r in records())
    finally:
        srv.stop()
    down = subprocess.run([*cmd, "--limit", "6"], capture_output=True, text=True, timeout=600)
    assert down.returncode == 2  # the server is gone: one clear line, nothing lost
    assert srv.base_url in down.stderr and "Traceback" not in down.stderr
    assert len(records()) == 4
    restarted = ServerProcess(MODEL, tmp_path / "server2.log", port=srv.port).start()
    try:
        again = subprocess.run([*cmd, "--limit", "6"], capture_output=True, text=True, timeout=600)
    finally:
        restarted.stop()
    assert again.returncode == 0, again.stderr
    ids = [r["id"] for r in records()]
    assert sorted(ids) == ["0", "1", "2", "3", "4", "5"] and len(ids) == len(set(ids))
    assert all(r["error"] is None for r in records())
