"""Features router training on synthetic step pairs: it learns a known signal, not a shuffled one; the
split is by question, downsampling balances, history annotation matters, routers round-trip on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from arbitrage.backends.base import FinishReason, StepOutput
from arbitrage.errors import RouterError
from arbitrage.router.base import RouterExample
from arbitrage.router.data import read_pairs
from arbitrage.router.features import ALL_FEATURES, HISTORY_FEATURES, check_arithmetic, extract_features
from arbitrage.router.store import load_router, save_router
from arbitrage.router.train import TrainOptions, downsample, load_rows, prepare, split_questions, train_router
from arbitrage.trace import Decision, StepRecord
from tests.router_synth import synthetic_pairs, write_pairs


@pytest.fixture(scope="module")
def feature_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = write_pairs(tmp_path_factory.mktemp("pairs") / "features", synthetic_pairs(signal="features"))
    return read_pairs(folder)


def test_features_router_learns_the_signal(feature_rows: list[dict]) -> None:
    trained = train_router(feature_rows, TrainOptions())
    m = trained.metrics
    assert m.spearman is not None and m.spearman > 0.3
    assert m.roc_auc is not None and m.roc_auc > 0.75
    assert m.balanced_accuracy is not None and m.balanced_accuracy > 0.65
    assert m.rows == trained.config["data"]["val_rows"] and m.questions == 40
    assert all(0.0 <= s <= 1.0 for s in trained.val_scores)


def test_shuffled_labels_control_learns_nothing(tmp_path: Path) -> None:
    rows = read_pairs(write_pairs(tmp_path / "shuffled", synthetic_pairs(signal="features", shuffle=True)))
    m = train_router(rows, TrainOptions()).metrics
    assert m.spearman is not None and abs(m.spearman) < 0.2
    assert m.roc_auc is not None and abs(m.roc_auc - 0.5) < 0.12


def test_history_annotation_is_what_lets_the_router_see_the_history(tmp_path: Path) -> None:
    rows = read_pairs(write_pairs(tmp_path / "history", synthetic_pairs(signal="history")))
    annotated = train_router(rows, TrainOptions(annotate=True))
    plain = train_router(rows, TrainOptions(annotate=False))
    assert set(HISTORY_FEATURES) <= set(annotated.config["kind_config"]["features"])
    assert not set(HISTORY_FEATURES) & set(plain.config["kind_config"]["features"])
    assert annotated.metrics.spearman is not None and annotated.metrics.spearman > 0.5
    assert plain.metrics.spearman is not None and plain.metrics.spearman < annotated.metrics.spearman - 0.25


def test_split_is_by_question_and_seeded(feature_rows: list[dict]) -> None:
    data = prepare(feature_rows, 0.2, seed=0)
    train_q, val_q = set(data.train.question_ids), set(data.val.question_ids)
    assert not train_q & val_q
    assert len(val_q) == 40 and len(train_q) == 160
    assert len(data.train) + len(data.val) == len(feature_rows)
    # every step of a held-out question is held out
    assert len(data.val) == sum(1 for r in feature_rows if r["question_id"] in val_q)
    assert prepare(feature_rows, 0.2, seed=0).split == data.split
    assert prepare(feature_rows, 0.2, seed=1).split != data.split
    # the same questions in another order split the same way
    assert split_questions(sorted(train_q | val_q, reverse=True), 0.2, 0) == (train_q, val_q)


def test_downsampling_balances_the_two_sides() -> None:
    positive = np.array([1] * 30 + [0] * 170, dtype=bool)
    keep = downsample(positive, seed=0)
    assert positive[keep].sum() == 30 and (~positive[keep]).sum() == 30
    assert set(np.flatnonzero(positive)) <= set(keep)
    assert keep.tolist() == downsample(positive, seed=0).tolist()
    assert keep.tolist() != downsample(positive, seed=1).tolist()
    flipped = downsample(~positive, seed=0)  # the majority may be either side
    assert (~positive)[flipped].sum() == 30 and len(flipped) == 60


def test_downsampling_switch(feature_rows: list[dict]) -> None:
    on = train_router(feature_rows, TrainOptions(downsample=True))
    off = train_router(feature_rows, TrainOptions(downsample=False))
    counts_on, counts_off = on.config["data"]["train_label_counts"], off.config["data"]["train_label_counts"]
    assert counts_on[0] == counts_on[1]
    assert counts_off[0] > counts_off[1] and sum(counts_off) == on.config["data"]["train_rows"]
    # validation rows are never downsampled
    assert on.metrics.rows == off.metrics.rows


@pytest.mark.parametrize(("classes", "score"), [(4, "p_positive"), (10, "expected")])
def test_multiclass_routers_train_and_score(feature_rows: list[dict], classes: int, score: str) -> None:
    trained = train_router(feature_rows, TrainOptions(classes=classes, score=score))
    assert trained.scheme.num_classes == classes
    assert len(trained.config["data"]["train_label_counts"]) == classes
    assert trained.metrics.spearman is not None and trained.metrics.spearman > 0.3


def test_gbt_estimator(feature_rows: list[dict], tmp_path: Path) -> None:
    trained = train_router(feature_rows[:360], TrainOptions(estimator="gbt"))
    assert trained.metrics.spearman is not None and trained.metrics.spearman > 0.3
    save_router(tmp_path / "gbt", trained.router, trained.config, trained.split)
    loaded = load_router(tmp_path / "gbt")
    examples = [RouterExample.from_pair(r) for r in feature_rows[:20]]
    assert np.allclose(loaded.router.score_batch(examples), trained.router.score_batch(examples))


def test_save_load_round_trip(feature_rows: list[dict], tmp_path: Path) -> None:
    trained = train_router(feature_rows, TrainOptions(classes=4), source="synthetic")
    path = save_router(tmp_path / "router", trained.router, trained.config, trained.split)
    assert sorted(p.name for p in path.iterdir()) == ["features_logistic.npz", "router.json", "split.json"]
    loaded = load_router(path)
    examples = [RouterExample.from_pair(r) for r in feature_rows[:50]]
    assert np.allclose(loaded.router.score_batch(examples), trained.router.score_batch(examples))
    assert loaded.kind == "features" and loaded.router.scheme == trained.scheme
    assert loaded.metrics["spearman"] == pytest.approx(trained.metrics.spearman)
    assert loaded.config["data"]["fingerprint"] == trained.config["data"]["fingerprint"]
    assert loaded.config["data"]["source"] == "synthetic"
    assert loaded.train_questions == set(trained.split["train_questions"])
    assert [(r.tau, r.rate) for r in loaded.tau_table] == [(r.tau, r.rate) for r in trained.tau_table]
    with pytest.raises(RouterError, match="already exists"):
        save_router(path, trained.router, trained.config, trained.split)
    save_router(path, trained.router, trained.config, trained.split, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_fingerprint_follows_the_rows_not_their_order(feature_rows: list[dict]) -> None:
    a = prepare(feature_rows).fingerprint
    assert prepare(list(reversed(feature_rows))).fingerprint == a
    changed = [dict(r) for r in feature_rows]
    changed[0]["delta"] += 0.01
    assert prepare(changed).fingerprint != a


def test_load_router_errors(tmp_path: Path, feature_rows: list[dict]) -> None:
    with pytest.raises(RouterError, match="Router folder not found"):
        load_router(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RouterError, match="not a router folder"):
        load_router(tmp_path / "empty")
    trained = train_router(feature_rows, TrainOptions())
    path = save_router(tmp_path / "r", trained.router, trained.config, trained.split)
    (path / "features_logistic.npz").write_bytes(b"not a zip")
    with pytest.raises(RouterError, match="Cannot load the features router weights"):
        load_router(path)
    (path / "router.json").write_text("{ broken")
    with pytest.raises(RouterError, match="Corrupt router config"):
        load_router(path)
    config = dict(trained.config, format="arbitrage-router", version=1, kind="nope")
    (path / "router.json").write_text(json.dumps(config))
    with pytest.raises(RouterError, match="unknown router kind 'nope'"):
        load_router(path)


def test_bad_training_data(tmp_path: Path) -> None:
    with pytest.raises(RouterError, match="not found"):
        load_rows(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RouterError, match="No step pairs"):
        load_rows(tmp_path / "empty")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(RouterError, match="Cannot read step pairs"):
        load_rows(tmp_path / "bad.parquet")
    rows = synthetic_pairs(questions=20, steps=3)
    negative = read_pairs(write_pairs(tmp_path / "neg", [_with_delta(r, -0.2) for r in rows]))
    with pytest.raises(RouterError, match=r"All \d+ training rows have Δ ≤ 0"):
        train_router(negative, TrainOptions())
    positive = read_pairs(write_pairs(tmp_path / "pos", [_with_delta(r, 0.3) for r in rows]))
    with pytest.raises(RouterError, match=r"Δ > 0 \(target better\)"):
        train_router(positive, TrainOptions())
    one_question = read_pairs(write_pairs(tmp_path / "one", synthetic_pairs(questions=1, steps=5)))
    with pytest.raises(RouterError, match="needs at least 2"):
        train_router(one_question, TrainOptions())
    with pytest.raises(RouterError, match="Unknown router --kind"):
        TrainOptions(kind="svm")
    with pytest.raises(RouterError, match="--val-fraction"):
        TrainOptions(val_fraction=1.0)


def _with_delta(row, delta: float):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(row, delta=delta, y=int(delta > 0))


def test_features_are_the_same_from_a_row_and_from_the_engine(feature_rows: list[dict]) -> None:
    row = next(r for r in feature_rows if r["step_index"] == 3)
    from_row = RouterExample.from_pair(row)
    history = tuple(
        StepRecord(index=i, text=text, role=role, model=role, finish_reason=FinishReason.STEP, draft=None,
                   target=None, decision=Decision(escalate=role == "target"), policy_seconds=0.0)
        for i, (text, role) in enumerate(zip(row["context"], row["history"], strict=True))
    )  # fmt: skip
    draft = StepOutput(text=row["z_d"], finish_reason=FinishReason.STEP, model="d", tokens=row["draft_tokens"],
                       token_logprobs=tuple(row["draft_logprobs"]), token_entropies=tuple(row["draft_entropies"]))  # fmt: skip
    from_engine = RouterExample.from_step(row["question"], history, draft)
    assert from_engine == from_row
    f = extract_features(from_row)
    assert set(f) == set(ALL_FEATURES)
    assert f["step_index"] == 3 and f["hist_targets"] == row["history"].count("target")
    assert f["lp_min"] == pytest.approx(min(row["draft_logprobs"]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So 3 + 4 = 7 apples.", (1, 0)),
        ("So 3 + 4 = 8 apples.", (1, 1)),
        # "2 x 3 = 6" counts since the check is the arithmetic verifier's (the old regex missed "x")
        ("Total: $1,200 * 3 = $3,600 and 10 / 4 = 2.5, then 2 x 3 = 6", (3, 0)),
        ("(12 - 2) \\times 3 = 31", (1, 1)),
        ("10 / 3 = 3.33", (1, 0)),
        ("10 / 3 = 3.4", (1, 1)),
        ("x = 5 and y = 7", (0, 0)),
        ("Step 1: 2 + 2 = 4 = 4", (1, 0)),
        ("1 / 0 = 5", (0, 0)),
        ("So 2.5 . 5 = 12.5", (0, 0)),  # crashed the sympy-based verifier (AttributeError); not checkable
        ("\\frac{3}{4} \\times 8 = 6 and 20% of 50 = 11", (2, 1)),
    ],
)
def test_arithmetic_check(text: str, expected: tuple[int, int]) -> None:
    assert check_arithmetic(text) == expected
