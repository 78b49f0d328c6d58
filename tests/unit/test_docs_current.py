"""docs/cli.md is the CLI reference generated from the typer app by typer's own ``utils docs``.

The test renders it again in memory, exactly as the command below does, and fails when the file is
stale (a command, an option, a default or a help text changed without regenerating it).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
CLI_REFERENCE = ROOT / "docs" / "cli.md"
TITLE = "arbitrage CLI reference"
DOCS_ARGS = ["arbitrage.cli.main", "utils", "docs", "--name", "arbitrage", "--title", TITLE]
REGENERATE = f'.venv/bin/typer {" ".join(DOCS_ARGS[:-1])} "{TITLE}" --output docs/cli.md'


def render_cli_reference(out: Path) -> str:
    """Run ``typer arbitrage.cli.main utils docs ...`` in process and return the Markdown it writes."""
    from typer.cli import app as typer_cli

    result = CliRunner().invoke(typer_cli, [*DOCS_ARGS, "--output", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def test_cli_reference_is_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a fixed terminal width: nothing in the rendering may depend on the terminal running the test
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERMINAL_WIDTH", "100")
    expected = render_cli_reference(tmp_path / "cli.md")
    current = CLI_REFERENCE.read_text(encoding="utf-8") if CLI_REFERENCE.is_file() else ""
    if current != expected:
        diff = "".join(
            list(difflib.unified_diff(current.splitlines(True), expected.splitlines(True),
                                      "docs/cli.md", "generated"))[:60]
        )  # fmt: skip
        pytest.fail(f"docs/cli.md is stale; regenerate it with\n    {REGENERATE}\n\n{diff}")


def test_rendering_does_not_depend_on_the_terminal_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("TERMINAL_WIDTH", "40")
    narrow = render_cli_reference(tmp_path / "narrow.md")
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERMINAL_WIDTH", "250")
    assert render_cli_reference(tmp_path / "wide.md") == narrow
