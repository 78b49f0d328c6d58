"""`arbitrage serve`: --help, and bad settings as one-line errors before any model loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arbitrage.cli.main import app


def test_help() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for flag in ("--draft", "--target", "--policy", "--router", "--host", "--port", "--api-key"):
        assert flag in result.output


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arbitrage.cli.main", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "nope"], "Unknown policy 'nope'"),
        (["--allow-policy", "nope"], "Unknown policy 'nope'"),
        (["--policy", "random", "--p", "2"], "--p must be within [0, 1]"),
        (["--policy", "random", "-o", "p=abc"], "Invalid policy option p='abc'"),
        (["-o", "novalue"], "--policy-option expects KEY=VALUE"),
        (["-o", "bogus=1"], "Unknown policy option 'bogus'"),
        (["--max-queue", "-1"], "max_queue"),
        (["--max-steps", "500"], "max_steps (500) is above max_steps_limit (100)"),
        (["--port", "70000"], "port"),
        (["--config", "/nonexistent/serve.toml"], "Config file not found"),
        (["--draft", "/nonexistent/model.gguf"], "Model file not found"),
        (["--draft", "no-such-model"], "Unknown model 'no-such-model'"),
    ],
)
def test_bad_settings_are_one_line_and_nonzero(args: list[str], message: str) -> None:
    result = run_serve(*args, "--port", "0") if "--port" not in args else run_serve(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_config_file_keys_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("max_concurency = 2\n")
    result = run_serve("--config", str(config))
    assert result.returncode == 2 and "max_concurency: unknown setting" in result.stderr
