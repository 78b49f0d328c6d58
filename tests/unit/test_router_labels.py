"""Label schemes, the class-probability -> ŷ mapping, router metrics and the τ table, on hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest

from arbitrage.errors import RouterError
from arbitrage.router.labels import LabelScheme, fit_scheme
from arbitrage.router.metrics import router_metrics, tau_for_rate, tau_table

DELTAS = np.array([-0.8, -0.4, -0.3, -0.1, -0.05, 0.0, 0.0, 0.02, 0.1, 0.2, 0.5, 0.9])


def test_binary_scheme_is_the_oracle_label() -> None:
    scheme = fit_scheme(DELTAS, 2)
    assert scheme.edges == (0.0,)
    assert scheme.num_classes == 2 and scheme.name == "binary"
    labels = scheme.labels(DELTAS)
    assert labels.tolist() == [int(d > 0) for d in DELTAS]  # ties (Δ = 0) are label 0
    assert scheme.positive(labels).tolist() == labels.tolist()
    assert scheme.class_means[0] == pytest.approx(DELTAS[DELTAS <= 0].mean())


@pytest.mark.parametrize("classes", [4, 10])
def test_multiclass_bins_keep_zero_as_the_label_boundary(classes: int) -> None:
    rng = np.random.default_rng(0)
    deltas = np.concatenate([rng.uniform(-1, 0, 300), np.zeros(50), rng.uniform(0, 1, 150)])
    scheme = fit_scheme(deltas, classes)
    assert scheme.num_classes == classes == scheme.requested_classes
    labels = scheme.labels(deltas)
    assert scheme.positive(labels).tolist() == (deltas > 0).astype(int).tolist()
    counts = np.bincount(labels, minlength=classes)
    assert (counts > 0).all()
    # quantile edges: the classes of one side hold about the same number of rows
    neg, pos = counts[: classes // 2], counts[classes // 2 :]
    assert (
        pos.max() - pos.min() <= 2 and neg[:-1].max() - neg[:-1].min() <= 2
    )  # last neg class also holds Δ = 0
    means = np.array(scheme.class_means)
    assert (np.diff(means) > 0).all()


def test_multiclass_merges_bins_that_would_be_empty() -> None:
    deltas = np.array([-0.5, -0.5, -0.5, 0.0, 0.3, 0.3, 0.3, 0.3])  # too few distinct values for 10 bins
    scheme = fit_scheme(deltas, 10)
    assert scheme.requested_classes == 10
    assert scheme.num_classes < 10
    assert (np.bincount(scheme.labels(deltas), minlength=scheme.num_classes) > 0).all()
    assert scheme.positive(scheme.labels(deltas)).tolist() == (deltas > 0).astype(int).tolist()


def test_score_mappings() -> None:
    scheme = LabelScheme(edges=(-0.2, 0.0, 0.2), class_means=(-0.5, -0.1, 0.1, 0.6), score="p_positive")
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert scheme.escalation_score(probs) == pytest.approx([0.7, 0.0, 1.0])
    expected = LabelScheme(edges=(-0.2, 0.0, 0.2), class_means=(-0.5, -0.1, 0.1, 0.6), score="expected")
    e = 0.1 * -0.5 + 0.2 * -0.1 + 0.3 * 0.1 + 0.4 * 0.6
    assert expected.escalation_score(probs) == pytest.approx([(e + 1) / 2, 0.25, 0.8])
    assert expected.name == "4-class/expected"
    # the expected-advantage score is monotone in the probability mass moved to higher classes
    assert (
        expected.escalation_score(np.array([[0.5, 0.5, 0, 0]]))[0]
        < expected.escalation_score(np.array([[0.5, 0, 0.5, 0]]))[0]
    )
    with pytest.raises(RouterError, match="3 classes"):
        scheme.escalation_score(np.ones((1, 3)) / 3)


def test_scheme_round_trip_and_bad_values() -> None:
    scheme = fit_scheme(DELTAS, 4, "expected")
    assert LabelScheme.from_dict(scheme.to_dict()) == scheme
    with pytest.raises(RouterError, match="--classes must be one of 2, 4, 10"):
        fit_scheme(DELTAS, 3)
    with pytest.raises(RouterError, match="--score must be one of"):
        fit_scheme(DELTAS, 2, "median")
    with pytest.raises(RouterError, match="0 among them"):
        LabelScheme(edges=(0.1,), class_means=(0.0, 0.2))
    with pytest.raises(RouterError, match="Malformed label scheme"):
        LabelScheme.from_dict({"edges": "x"})


def test_metrics_on_a_perfect_and_an_inverted_router() -> None:
    deltas = np.array([-0.3, -0.2, -0.1, 0.1, 0.2, 0.3])
    perfect = router_metrics((deltas + 1) / 2, deltas, ["a", "a", "b", "b", "c", "c"])
    assert perfect.spearman == pytest.approx(1.0)
    assert perfect.roc_auc == pytest.approx(1.0)
    assert perfect.balanced_accuracy == perfect.accuracy_label0 == perfect.accuracy_label1 == 1.0
    assert perfect.escalation_rate == 0.5 and perfect.questions == 3 and perfect.positive_rate == 0.5
    inverted = router_metrics((1 - deltas) / 2, deltas)
    assert inverted.spearman == pytest.approx(-1.0)
    assert inverted.roc_auc == pytest.approx(0.0)
    assert inverted.balanced_accuracy == 0.0


def test_metrics_that_a_sample_cannot_define_are_none() -> None:
    constant = router_metrics(np.full(4, 0.7), np.array([-0.1, 0.2, 0.3, 0.0]))
    assert constant.spearman is None
    assert constant.roc_auc == pytest.approx(0.5)
    assert constant.accuracy_label0 == 0.0 and constant.accuracy_label1 == 1.0
    one_label = router_metrics(np.array([0.2, 0.6, 0.9]), np.array([-0.1, -0.2, 0.0]))
    assert (
        one_label.roc_auc is None
        and one_label.balanced_accuracy is None
        and one_label.accuracy_label1 is None
    )
    assert one_label.accuracy_label0 == pytest.approx(1 / 3)
    with pytest.raises(RouterError, match="No rows"):
        router_metrics(np.zeros(0), np.zeros(0))


def test_question_bootstrap_intervals() -> None:
    rng = np.random.default_rng(1)
    questions = [f"q{i // 5}" for i in range(200)]  # 40 questions of 5 rows
    deltas = rng.normal(0, 0.2, 200)
    informative = router_metrics(1 / (1 + np.exp(-(deltas * 5 + rng.normal(0, 1, 200)))), deltas, questions)
    assert informative.spearman_ci is not None and informative.balanced_accuracy_ci is not None
    lo, hi = informative.spearman_ci
    assert lo < informative.spearman < hi and lo > 0.2  # a clear signal: the interval excludes 0
    noise = router_metrics(rng.uniform(size=200), deltas, questions)
    assert noise.spearman_ci is not None and noise.spearman_ci[0] < 0 < noise.spearman_ci[1]
    # too few questions: no interval; no ids: no interval
    few, deltas8 = np.linspace(0, 1, 8), np.linspace(-1, 1, 8)
    assert router_metrics(few, deltas8, ["a"] * 8).spearman_ci is None
    assert router_metrics(few, deltas8).spearman_ci is None
    with pytest.raises(RouterError, match="question ids"):
        router_metrics(few, deltas8, ["a"])


def test_tau_table_rates_are_measured_and_target_rate_picks_the_closest() -> None:
    scores = np.linspace(0.0, 0.99, 100)
    table = tau_table(scores)
    taus = [r.tau for r in table]
    assert taus == sorted(taus) and taus[0] == 0.0 and taus[-1] == 1.0
    for row in table:
        assert row.rate == pytest.approx(float((scores > row.tau).mean()))
    rates = [r.rate for r in table]
    assert rates == sorted(rates, reverse=True)
    for target in (0.0, 0.1, 0.3, 0.5, 0.9):
        chosen = tau_for_rate(table, target)
        assert abs(chosen.rate - target) <= 0.011
        assert float((scores > chosen.tau).mean()) == pytest.approx(chosen.rate)
    assert tau_for_rate(table, 1.0).rate >= 0.99
    with pytest.raises(RouterError, match="within \\[0, 1\\]"):
        tau_for_rate(table, 1.5)


def test_tau_table_with_ties() -> None:
    scores = np.array([0.2] * 50 + [0.8] * 50)
    table = tau_table(scores)
    assert {r.rate for r in table} <= {0.0, 0.5, 1.0}
    assert tau_for_rate(table, 0.4).rate == 0.5
    assert tau_for_rate(table, 0.9).rate == 1.0
