"""The CLI: --help for every command, and one-line errors with a non-zero exit for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from arbitrage.cli.main import app

COMMANDS = [[], ["solve"], ["models"], ["models", "list"], ["models", "fetch"], ["eval-prm"], ["eval"], ["sweep"],
            ["report"], ["collect"], ["train-router"], ["eval-router"], ["serve"], ["calibrate-verify"], ["bench-costs"]]  # fmt: skip


def test_every_registered_command_is_covered() -> None:
    import typer.main

    group = typer.main.get_command(app)
    names = set(group.commands)  # type: ignore[attr-defined]
    assert names == {c[0] for c in COMMANDS if c}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arbitrage.cli.main", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", "  "], "question is empty"),
        (["solve", "What is 1+1?", "--draft", "no-such-model"], "Unknown model 'no-such-model'"),
        (["solve", "What is 1+1?", "--draft", "/nonexistent/model.gguf"], "Model file not found"),
        (["solve", "What is 1+1?", "--max-steps", "0"], "max_steps must be positive"),
        (["solve", "What is 1+1?", "--max-step-tokens", "-5"], "max_step_tokens must be positive"),
        (["solve", "What is 1+1?", "--policy", "nope"], "Unknown policy 'nope'"),
        (["solve", "What is 1+1?", "--policy", "random", "--p", "2"], "--p must be within"),
        (["models", "fetch", "nope"], "Unknown model 'nope'"),
        (["solve", "What is 1+1?", "--policy", "rsd", "--threshold", "2"], "--threshold must be within"),
        (
            ["solve", "What is 1+1?", "--policy", "oracle", "--target-samples", "0"],
            "--target-samples must be",
        ),
        (["solve", "What is 1+1?", "--policy", "rsd", "--prm", "nope:x"], "Unknown PRM 'nope:x'"),
        (["solve", "What is 1+1?", "--policy", "oracle", "--prm", "judge:x#nope"], "Unknown judge prompt"),
        (["eval-prm", "--data", "/nonexistent.jsonl", "--prm", "arith"], "Step-labelled set not found"),
        (["eval-prm", "--data", "/nonexistent.jsonl", "--limit", "0"], "--limit must be positive"),
        (["sweep", "--points", "random@b:p=0.5"], "uses variant 'b', which no variant defines"),
        (["sweep", "--points", "random@b:p=0.5", "--variant", "b: tau=1"], "sets 'tau', not an option"),
        (["sweep", "--points", "random@b:p=0.5", "--variant", "b tau=1"], "Bad variant 'b tau=1'"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_not_a_gguf_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "model.gguf"
    bad.write_text("hello")
    result = run_cli("solve", "What is 1+1?", "--draft", str(bad))
    assert result.returncode == 2
    assert "Not a GGUF model file" in result.stderr


def test_models_list_shows_every_named_model() -> None:
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0
    for name in ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        assert name in result.output
