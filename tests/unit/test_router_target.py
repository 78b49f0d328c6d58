"""Routers with target-side inputs, outcome labels, the routing policy's verification, and the
eval-router comparison of inputs with the raw verification baselines."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.cli.main import app
from arbitrage.engine import Engine
from arbitrage.errors import RouterError
from arbitrage.policies.router import RouterPolicy
from arbitrage.router.base import RouterExample, VerificationSummary
from arbitrage.router.data import SCHEMA, StepPair, read_pairs
from arbitrage.router.evaluate import BASELINES, compare_inputs
from arbitrage.router.features import TARGET_FEATURES, feature_names
from arbitrage.router.metrics import router_metrics
from arbitrage.router.report import comparison_markdown
from arbitrage.router.train import TrainOptions, train_router
from tests.router_synth import synthetic_pairs, write_pairs


def with_target_side(rows: list[StepPair], seed: int = 0, outcome_missing: int = 0) -> list[StepPair]:
    """Adds a verification whose agreement carries Δ's sign, and an outcome advantage = −Δ."""
    rng = np.random.default_rng(seed)
    out = []
    for i, r in enumerate(rows):
        agreement = float(np.clip(0.5 - 2.0 * r.delta + rng.normal(0, 0.1), 0, 1))
        n = r.draft_tokens + 1
        t_lp = [-0.2 - 3.0 * (1 - agreement)] * n
        mean_d = float(np.mean(r.draft_logprobs))
        outcome = None if i < outcome_missing else -r.delta
        out.append(
            dataclasses.replace(
                r,
                t_tokens=n,
                t_logprobs=t_lp,
                t_mean_logprob=t_lp[0],
                t_min_logprob=t_lp[0],
                t_agreement=agreement,
                t_first_divergence=None if agreement > 0.9 else int(agreement * n),
                t_end_is_eos=False,
                verify_seconds=0.01,
                verify_prefill_tokens=n,
                gsi=t_lp[0] - mean_d,
                outcome_advantage=outcome,
                outcome_d=None if outcome is None else 0.5,
                outcome_t=None if outcome is None else 0.5 + outcome,
                y_outcome=None if outcome is None else int(outcome > 0),
            )
        )
    return out


@pytest.fixture(scope="module")
def target_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    # shuffled: the draft's side carries nothing; the target's verification carries Δ
    rows = with_target_side(
        synthetic_pairs(questions=120, signal="features", shuffle=True), outcome_missing=30
    )
    return read_pairs(write_pairs(tmp_path_factory.mktemp("pairs") / "target", rows))


def test_target_features_only_with_target_or_both_inputs() -> None:
    assert not set(TARGET_FEATURES) & set(feature_names(True, "draft"))
    assert set(TARGET_FEATURES) <= set(feature_names(True, "target"))
    assert set(feature_names(True, "both")) == set(feature_names(True, "draft")) | set(TARGET_FEATURES)
    assert "lp_mean" not in feature_names(True, "target")
    with pytest.raises(RouterError, match="--inputs"):
        feature_names(True, "neither")


def test_only_target_side_routers_learn_a_target_side_signal(target_rows: list[dict]) -> None:
    draft = train_router(target_rows, TrainOptions())
    target = train_router(target_rows, TrainOptions(inputs="target"))
    both = train_router(target_rows, TrainOptions(inputs="both"))
    assert draft.config["inputs"] == "draft" and target.config["inputs"] == "target"
    assert not set(TARGET_FEATURES) & set(draft.config["kind_config"]["features"])
    assert set(TARGET_FEATURES) <= set(both.config["kind_config"]["features"])
    assert target.metrics.roc_auc is not None and target.metrics.roc_auc > 0.85
    assert both.metrics.roc_auc is not None and both.metrics.roc_auc > 0.8
    assert draft.metrics.roc_auc is not None and draft.metrics.roc_auc < 0.65
    assert target.router.inputs == "target" and draft.router.inputs == "draft"  # type: ignore[attr-defined]


def test_label_outcome_trains_on_the_outcome_column(target_rows: list[dict]) -> None:
    prm = train_router(target_rows, TrainOptions(inputs="target"))
    outcome = train_router(target_rows, TrainOptions(inputs="target", label_source="outcome"))
    assert outcome.config["label_source"] == "outcome" and prm.config["label_source"] == "prm"
    missing = sum(r["outcome_advantage"] is None for r in target_rows)
    assert missing > 0 and outcome.config["data"]["rows_dropped"]["without_label"] == missing
    assert outcome.config["data"]["rows"] == len(target_rows) - missing
    # outcome advantage = −Δ here: the outcome router ranks the other way, and well, on its own labels
    assert outcome.metrics.spearman is not None and outcome.metrics.spearman > 0.5
    assert prm.metrics.spearman is not None and prm.metrics.spearman > 0.5
    kept = [r for r in target_rows if r["outcome_advantage"] is not None]
    examples = [RouterExample.from_pair(r) for r in kept]
    corr = np.corrcoef(prm.router.score_batch(examples), outcome.router.score_batch(examples))[0, 1]
    assert corr < -0.5


def test_missing_columns_are_one_line_errors(tmp_path: Path) -> None:
    rows = read_pairs(write_pairs(tmp_path / "plain", synthetic_pairs(questions=20)))
    with pytest.raises(RouterError, match="outcome_advantage"):
        train_router(rows, TrainOptions(label_source="outcome"))
    with pytest.raises(RouterError, match="t_\\* columns"):
        train_router(rows, TrainOptions(inputs="both"))
    with pytest.raises(RouterError, match="--inputs both needs --kind features"):
        TrainOptions(kind="lm", inputs="both")


def test_old_shards_load_and_train(tmp_path: Path) -> None:
    """A shard written before the verification and outcome columns existed."""
    old_names = SCHEMA.names[: SCHEMA.names.index("prm") + 1]
    rows = [dataclasses.asdict(r) for r in synthetic_pairs(questions=40)]
    old = pa.schema([SCHEMA.field(n) for n in old_names])
    tmp_path.mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{n: r[n] for n in old_names} for r in rows], schema=old),
                   tmp_path / "part-00000.parquet")  # fmt: skip
    loaded = read_pairs(tmp_path)
    assert len(loaded) == len(rows) and all(
        r["t_tokens"] is None and r["outcome_advantage"] is None for r in loaded
    )
    assert RouterExample.from_pair(loaded[0]).verification is None
    assert train_router(loaded, TrainOptions()).metrics.rows > 0


class NoVerify:
    """A target that can write steps but not verify them."""

    name = "t"

    def __init__(self) -> None:
        self.inner = ScriptedGenerator("t", lambda c: ("y", FinishReason.STEP))

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        return self.inner.generate_step(context, params)

    def close(self) -> None:
        self.inner.close()


def scripted_solve(policy: RouterPolicy) -> tuple[ScriptedGenerator, list]:
    def draft(ctx: StepContext) -> tuple[str, FinishReason]:
        if len(ctx.steps) >= 3:
            return "so \\boxed{3}", FinishReason.STEP
        return f"we add {len(ctx.steps)} apples", FinishReason.STEP

    def target(ctx: StepContext) -> tuple[str, FinishReason]:
        if len(ctx.steps) >= 3:
            return "so \\boxed{3}", FinishReason.STEP
        return f"we add {len(ctx.steps)} pears", FinishReason.STEP

    t = ScriptedGenerator("t", target)
    trace = Engine(ScriptedGenerator("d", draft), t, policy).solve("q?")
    return t, trace.steps


def test_routing_policy_verifies_for_target_side_routers(target_rows: list[dict]) -> None:
    router = train_router(target_rows, TrainOptions(inputs="target")).router
    policy = RouterPolicy(router, 0.5)
    target, steps = scripted_solve(policy)
    assert len(target.verifications) == len(steps)  # the engine's target verified once per decision
    for i, ((context, text), step) in enumerate(zip(list(target.verifications), steps, strict=True)):
        assert step.draft is not None and text == step.draft.text
        assert context.steps == tuple(s.text for s in steps[:i])
        v = target.verify_step(context, step.draft, StepParams())
        summary = VerificationSummary.from_verification(v, step.draft.token_logprobs)
        example = RouterExample.from_step("q?", steps[:i], step.draft, summary)
        assert step.decision.score == pytest.approx(float(router.score_batch([example])[0]))
        unverified = RouterExample.from_step("q?", steps[:i], step.draft)
        assert step.decision.score != pytest.approx(float(router.score_batch([unverified])[0]))
    assert len(target.calls) == sum(s.escalated for s in steps)
    # a draft-only router never asks for a verification
    draft_router = train_router(target_rows, TrainOptions()).router
    plain, _ = scripted_solve(RouterPolicy(draft_router, 0.5))
    assert plain.verifications == []
    # a target that cannot verify: a one-line error naming the problem
    cannot = Engine(ScriptedGenerator("d", lambda c: ("x", FinishReason.STEP)), NoVerify(),
                    RouterPolicy(router, 0.5))  # fmt: skip
    with pytest.raises(RouterError, match="cannot verify"):
        cannot.solve("q?")


def test_compare_inputs_has_routers_and_baselines_per_label(target_rows: list[dict]) -> None:
    result = compare_inputs(target_rows, TrainOptions(), folds=3)
    assert set(result.tables) == {"prm", "outcome"}
    names = [r.name for r in result.tables["prm"]]
    assert len(names) == 6 and set(BASELINES) <= set(names)
    # a baseline is the raw score, untrained: its pooled metrics are router_metrics of the score itself
    agreement = next(r for r in result.tables["prm"] if "agreement" in r.name)
    scores = np.asarray([-r["t_agreement"] for r in target_rows])
    deltas = np.asarray([r["delta"] for r in target_rows])
    expected = router_metrics(scores, deltas, [r["question_id"] for r in target_rows])
    assert agreement.metrics.spearman == pytest.approx(expected.spearman)
    assert agreement.metrics.roc_auc == pytest.approx(expected.roc_auc) and expected.roc_auc > 0.85
    assert agreement.folds is not None and len(agreement.folds.per_fold) == 3
    # against the outcome advantage (= −Δ here) the same score ranks the other way
    outcome_agreement = next(r for r in result.tables["outcome"] if "agreement" in r.name)
    assert outcome_agreement.metrics.roc_auc is not None and outcome_agreement.metrics.roc_auc < 0.15
    assert result.data["rows_per_label_source"]["outcome"] < result.data["rows_per_label_source"]["prm"]
    # which labels to train on: routers trained on the PRM's Δ, scored against the outcome advantage on
    # the same rows and folds as the ones trained on it
    outcome_names = [r.name for r in result.tables["outcome"]]
    crossed = [r for r in result.tables["outcome"] if r.name.endswith("trained on PRM Δ")]
    assert len(outcome_names) == 9 and len(crossed) == 3
    both_prm = next(r for r in crossed if "draft + target" in r.name)
    both_outcome = next(r for r in result.tables["outcome"] if r.name == "router: draft + target features")
    assert both_prm.metrics.rows == both_outcome.metrics.rows
    assert both_prm.details["label_source"] == "prm" and both_prm.details["scored_against"] == "outcome"
    # here the outcome advantage is −Δ, so a router trained on Δ ranks the outcome backwards
    assert both_prm.metrics.roc_auc is not None and both_outcome.metrics.roc_auc is not None
    assert both_prm.metrics.roc_auc < 0.5 < both_outcome.metrics.roc_auc
    assert "| router: draft + target features, trained on PRM Δ | – | – |" in comparison_markdown(result)
    with pytest.raises(RouterError, match="verification"):
        compare_inputs(read_pairs(write_pairs_tmp(target_rows)), TrainOptions(), folds=3)


def write_pairs_tmp(rows: list[dict]) -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp()) / "plain"
    plain = [StepPair(**{**r, "t_tokens": None}) for r in rows]
    return write_pairs(folder, plain)


def test_cli_train_label_outcome_and_eval_compare_inputs(target_rows: list[dict], tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "pairs", [StepPair(**r) for r in target_rows])
    runner = CliRunner()
    out = tmp_path / "router"
    result = runner.invoke(
        app, ["train-router", str(data), "--out", str(out), "--label", "outcome", "--inputs", "both"]
    )
    assert result.exit_code == 0, result.output
    assert "dropped rows: 30 without label" in result.output
    config = json.loads((out / "router.json").read_text())
    assert config["label_source"] == "outcome" and config["inputs"] == "both"
    report_dir = tmp_path / "eval"
    result = runner.invoke(
        app, ["eval-router", str(data), "--compare-inputs", "--folds", "3", "--out", str(report_dir)]
    )
    assert result.exit_code == 0, result.output
    text = (report_dir / "eval_router.md").read_text()
    assert "ρ vs PRM Δ" in text and "ROC-AUC vs outcome advantage" in text and "−GSI" in text
    report = json.loads((report_dir / "eval_router.json").read_text())
    assert set(report["inputs"]["tables"]) == {"prm", "outcome"}
