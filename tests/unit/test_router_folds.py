"""Router metrics over k question-grouped folds: the fold assignment, the mean and its interval, and
eval-router's --folds on synthetic step pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from arbitrage.cli.main import app
from arbitrage.router.base import RouterError
from arbitrage.router.data import read_pairs
from arbitrage.router.evaluate import cross_validate, question_folds
from arbitrage.router.metrics import fold_stat
from arbitrage.router.train import TrainOptions
from tests.router_synth import synthetic_pairs, write_pairs


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(
        tmp_path_factory.mktemp("pairs") / "f", synthetic_pairs(questions=60, signal="features")
    )


def test_fold_stat_is_a_t_interval_around_the_mean() -> None:
    stat = fold_stat([0.1, 0.2, 0.3, None, 0.2])
    assert stat.mean == pytest.approx(0.2)
    # sd of (0.1, 0.2, 0.3, 0.2) = 0.0816; t(0.975, 3) = 3.182; half width = 3.182 * 0.0816 / 2
    assert stat.ci == pytest.approx((0.2 - 0.12990, 0.2 + 0.12990), abs=1e-4)
    assert stat.values == (0.1, 0.2, 0.3, None, 0.2)
    assert fold_stat([0.4]).ci is None and fold_stat([None, None]).mean is None


def test_question_folds_keep_a_question_in_one_fold_and_are_seeded() -> None:
    ids = [f"q{i // 3}" for i in range(60)]  # 20 questions, 3 rows each
    folds = question_folds(ids, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(60))  # every row held out exactly once
    for held in folds:
        questions = {ids[i] for i in held}
        assert len(questions) == 4
        assert set(held.tolist()) == {i for i in range(60) if ids[i] in questions}  # all of their rows
    same = question_folds(ids, 5, seed=0)
    assert all((a == b).all() for a, b in zip(folds, same, strict=True))
    other = question_folds(ids, 5, seed=1)
    assert any(set(a.tolist()) != set(b.tolist()) for a, b in zip(folds, other, strict=True))
    with pytest.raises(RouterError, match="--folds must be within"):
        question_folds(ids, 21, seed=0)


def test_cross_validation_reports_every_fold_and_their_mean(folder: Path) -> None:
    rows = read_pairs(folder)
    cv, fits = cross_validate(rows, TrainOptions(), folds=4)
    assert cv.folds == 4 and len(cv.per_fold) == 4 and len(fits) == 4
    assert sum(m.rows for m in cv.per_fold) == cv.pooled.rows == len(rows)
    rho = cv.stat("spearman")
    per_fold = [m.spearman for m in cv.per_fold]
    assert rho.mean == pytest.approx(np.mean(per_fold))
    assert rho.ci is not None and rho.ci[0] < rho.mean < rho.ci[1]
    assert rho.ci[0] > 0.2  # the synthetic signal is learnable on every fold
    data = cv.to_dict()
    assert data["summary"]["spearman"]["mean"] == pytest.approx(rho.mean)
    assert len(data["per_fold"]) == 4


def test_eval_router_folds_on_a_saved_router_and_the_ablation(folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    router = tmp_path / "router"
    assert runner.invoke(app, ["train-router", str(folder), "--out", str(router)]).exit_code == 0
    result = runner.invoke(
        app, ["eval-router", str(folder), "--router", str(router), "--folds", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["routers"]
    assert row["folds"]["folds"] == 3 and len(row["folds"]["per_fold"]) == 3
    assert row["details"]["cross_validated_options"] == "features binary annotated downsampled"
    plain = runner.invoke(
        app, ["eval-router", str(folder), "--router", str(router), "--folds", "0", "--json"]
    )
    assert json.loads(plain.output)["routers"][0]["folds"] is None
    out = tmp_path / "ablation"
    result = runner.invoke(app, ["eval-router", str(folder), "--ablation", "--folds", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    markdown = (out / "eval_router.md").read_text()
    assert "2 folds by question id" in markdown and "| Spearman ρ mean [95% CI] |" in markdown
    tables = json.loads((out / "eval_router.json").read_text())["ablation"]["tables"]
    assert all(len(row["folds"]["per_fold"]) == 2 for rows in tables.values() for row in rows)
