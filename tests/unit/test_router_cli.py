"""`arbitrage train-router` and `arbitrage eval-router` end to end on a small synthetic shard folder, and
one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arbitrage.cli.main import app
from tests.router_synth import synthetic_pairs, write_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(
        tmp_path_factory.mktemp("data") / "pairs", synthetic_pairs(questions=100, signal="features"), 3
    )


@pytest.mark.parametrize("command", ["train-router", "eval-router"])
def test_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_train_then_eval(pairs: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "router"
    result = runner.invoke(app, ["train-router", str(pairs), "--out", str(out), "--classes", "4"])
    assert result.exit_code == 0, result.output
    assert "trained features 4-class annotated downsampled" in result.output
    assert "| Spearman ρ [95% CI] |" in result.output and "ms per step" in result.output
    config = json.loads((out / "router.json").read_text())
    assert config["kind"] == "features" and config["labels"]["num_classes"] == 4
    assert config["data"]["rows"] == 600 and config["data"]["source"] == str(pairs)
    # refuses to overwrite without --force, replaces with it
    again = runner.invoke(app, ["train-router", str(pairs), "--out", str(out)])
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    assert runner.invoke(app, ["train-router", str(pairs), "--out", str(out), "--force"]).exit_code == 0
    config = json.loads((out / "router.json").read_text())
    assert config["labels"]["num_classes"] == 2
    # eval on the same folder: only the held-out questions are scored
    result = runner.invoke(app, ["eval-router", str(pairs), "--router", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (row,) = report["routers"]
    assert row["metrics"]["rows"] == config["data"]["val_rows"]
    assert row["details"]["rows_skipped_as_training"] == config["data"]["train_rows"]
    assert row["metrics"]["spearman"] == pytest.approx(config["metrics"]["spearman"])


def test_eval_ablation_writes_markdown_and_json(pairs: Path, tmp_path: Path) -> None:
    out = tmp_path / "ablation"
    result = CliRunner().invoke(app, ["eval-router", str(pairs), "--ablation", "--out", str(out)])
    assert result.exit_code == 0, result.output
    markdown = (out / "eval_router.md").read_text()
    for heading in ("### History annotation", "### Label classes", "### Downsampling"):
        assert heading in markdown and heading in result.output
    for variant in ("| annotated |", "| not annotated |", "| 2 classes |", "| 4 classes |", "| 10 classes |",
                    "| downsampled |", "| all rows |"):  # fmt: skip
        assert variant in markdown
    report = json.loads((out / "eval_router.json").read_text())
    tables = report["ablation"]["tables"]
    assert [len(tables[t]) for t in ("History annotation", "Label classes", "Downsampling")] == [2, 3, 2]
    # the base variant is the same training in every table
    base = [tables["History annotation"][0], tables["Label classes"][0], tables["Downsampling"][0]]
    assert len({json.dumps(b["metrics"], sort_keys=True) for b in base}) == 1
    assert tables["Label classes"][2]["details"]["labels"]["num_classes"] == 10
    assert (
        tables["Downsampling"][1]["details"]["train_rows_used"]
        > tables["Downsampling"][0]["details"]["train_rows_used"]
    )
    for table in tables.values():
        for row in table:
            assert row["metrics"]["spearman"] > 0.3  # the signal is learnable by every variant


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arbitrage.cli.main", *args], capture_output=True, text=True, timeout=300
    )


def test_bad_input_is_one_line_and_nonzero(tmp_path: Path, pairs: Path) -> None:
    (tmp_path / "empty").mkdir()
    import dataclasses

    one_class = [dataclasses.replace(r, delta=-0.1, y=0) for r in synthetic_pairs(questions=10, steps=3)]
    write_pairs(tmp_path / "one_class", one_class)
    router = tmp_path / "router"
    assert CliRunner().invoke(app, ["train-router", str(pairs), "--out", str(router)]).exit_code == 0
    cases = [
        (["train-router", str(tmp_path / "missing"), "--out", str(tmp_path / "r1")], "Step-pair data not found"),
        (["train-router", str(tmp_path / "empty"), "--out", str(tmp_path / "r2")], "No step pairs in"),
        (["train-router", str(tmp_path / "one_class"), "--out", str(tmp_path / "r3")], "training rows have Δ ≤ 0"),
        (["train-router", str(pairs), "--out", str(tmp_path / "r4"), "--classes", "3"], "--classes must be one of"),
        (["train-router", str(pairs), "--out", str(tmp_path / "r5"), "--kind", "lm"], "needs --backbone"),
        (["eval-router", str(pairs)], "Nothing to evaluate"),
        (["eval-router", str(pairs), "--router", str(tmp_path / "nope")], "Router folder not found"),
        (["solve", "What is 1+1?", "--policy", "router"], "needs --tau"),  # no --router: the packaged one
        (["solve", "What is 1+1?", "--policy", "router", "--router", str(router)], "needs --tau"),
        (["solve", "What is 1+1?", "--policy", "router", "--router", str(router), "--tau", "2"], "--tau must be within"),
        (["solve", "What is 1+1?", "--policy", "router", "--router", str(router), "--target-rate", "-1"],
         "--target-rate must be within"),
        (["solve", "What is 1+1?", "--policy", "router", "--router", str(tmp_path / "empty"), "--tau", "0.5"],
         "not a router folder"),
    ]  # fmt: skip
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r3").exists()


def test_train_and_eval_an_lm_router_from_the_cli(pairs: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.router_tiny_lm import tiny_backbone

    backbone = tiny_backbone(tmp_path / "tiny", "llama")
    out = tmp_path / "lm"
    args = ["train-router", str(pairs), "--out", str(out), "--kind", "lm", "--backbone", str(backbone),
            "--max-steps", "2", "--batch-size", "4", "--max-length", "64", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "router.json").read_text())
    assert config["kind"] == "lm" and config["kind_config"]["train_steps"] == 2
    result = CliRunner().invoke(app, ["eval-router", str(pairs), "--router", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"| {out} |" in result.output
