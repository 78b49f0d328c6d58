"""AUROC and the eval-prm pipeline on a small set scored by the arithmetic verifier (no model)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arbitrage.cli.main import app
from arbitrage.prm.arithmetic import ArithmeticVerifier
from arbitrage.prm.base import StepScores
from arbitrage.prm.combine import VetoScorer
from arbitrage.prm.evalset import LabelledStep, write_rows
from arbitrage.prm.evaluate import auroc, bootstrap_auroc, evaluate_scorer


def test_auroc_by_hand() -> None:
    assert auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [1, 0, 0]) == 0.5  # ties count half
    # 2 positives x 2 negatives: pairs (0.8>0.3) (0.8>0.6) (0.4>0.3) (0.4<0.6) -> 3/4
    assert auroc([0.8, 0.4, 0.3, 0.6], [1, 1, 0, 0]) == 0.75
    assert auroc([0.2, 0.3], [1, 1]) is None
    low, high = bootstrap_auroc([0.8, 0.4, 0.3, 0.6] * 5, [1, 1, 0, 0] * 5)  # type: ignore[misc]
    assert 0.0 <= low <= 0.75 <= high <= 1.0


def row(i: int, step: str, label: int, kind: str) -> LabelledStep:
    return LabelledStep(id=f"r{i}", problem_id=f"p{i // 3}", question="How many?", prefix=("Start.",),
                        step=step, label=label, kind=kind, gold_answer="8")  # fmt: skip


ROWS = [
    row(0, "3 + 5 = 8 apples.", 1, "gold"),
    row(1, "3 + 5 = 9 apples.", 0, "corrupt-result"),
    row(2, "3 + 6 = 9 apples.", 0, "corrupt-operand"),
    row(3, "4 * 2 = 8 pears.", 1, "gold"),
    row(4, "4 * 2 = 6 pears.", 0, "corrupt-result"),
    row(5, "He thinks about it.", 1, "draft"),
    row(6, "So 2 + 2 = 5.", 0, "draft"),
]


def test_evaluate_scorer_reports_metrics_per_kind() -> None:
    (report,) = evaluate_scorer("arith", ArithmeticVerifier, ROWS)
    assert report.rows == 7 and report.name == "arith"
    assert report.rewards == {"r0": 1.0, "r1": 0.0, "r2": 1.0, "r3": 1.0, "r4": 0.0, "r5": 0.5, "r6": 0.0}
    assert report.mean_right == pytest.approx((1 + 1 + 0.5) / 3)
    assert report.mean_wrong == pytest.approx(1 / 4)
    # right {1, 1, .5} vs wrong {0, 1, 0, 0}: each 1 wins 3 pairs and ties 1, .5 wins 3: (3.5+3.5+3)/12
    assert report.auroc == pytest.approx(10 / 12)
    kinds = report.by_kind
    assert kinds["corrupt-result"]["auroc_vs_gold"] == 1.0  # the verifier catches every result slip
    assert kinds["corrupt-operand"]["auroc_vs_gold"] == 0.5  # ... and none of the wrong quantities
    assert kinds["draft"]["auroc"] == 1.0 and kinds["draft"]["positives"] == 1
    assert report.seconds_per_call >= 0 and report.prefill_tokens_per_call is None


def test_eval_prm_command_writes_results_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "set.jsonl"
    write_rows(data, ROWS)
    out = tmp_path / "res" / "results.json"
    result = CliRunner().invoke(app, ["eval-prm", "--data", str(data), "--prm", "arith", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "arith" in result.output and "AUROC" in result.output
    saved = json.loads(out.read_text())
    assert saved["rows"] == 7 and saved["right"] == 3 and saved["kinds"]["gold"] == 2
    assert saved["scorers"][0]["spec"] == "arith" and len(saved["scorers"][0]["rewards"]) == 7
    # --resume keeps what is there and adds the new scorer
    saved["scorers"][0]["name"] = "kept"
    out.write_text(json.dumps(saved))
    result = CliRunner().invoke(
        app, ["eval-prm", "--data", str(data), "--prm", "arith", "--prm", "arith:", "--out", str(out),
              "--resume", "--json", "--limit", "5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    again = json.loads(out.read_text())
    assert [s["spec"] for s in again["scorers"]] == ["arith", "arith:"]
    assert again["scorers"][0]["name"] == "kept" and again["scorers"][1]["rows"] == 5


class LengthScorer:
    """A deterministic stand-in judge: longer steps score higher."""

    name = "length"

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        return StepScores((min(1.0, len(steps[-1]) / 20),), len(steps) - 1, 0.01, scorer=self.name)

    def close(self) -> None:
        pass


def test_composite_scorer_reports_its_base_from_the_same_calls() -> None:
    combined, base = evaluate_scorer("judge+arith:fake", lambda: VetoScorer(LengthScorer()), ROWS)
    assert combined.spec == "judge+arith:fake" and combined.name == "length+arith"
    assert base.spec == "judge:fake" and base.name == "length"
    alone = evaluate_scorer("judge:fake", LengthScorer, ROWS)[0]
    assert base.rewards == alone.rewards and base.auroc == alone.auroc
    for row_id, reward in combined.rewards.items():
        vetoed = row_id in ("r1", "r4", "r6")  # the rows whose stated arithmetic is wrong
        assert reward == pytest.approx(base.rewards[row_id] * (0.1 if vetoed else 1.0), abs=1e-6)
