"""The speculation controller on hand-fed measurements: k follows the costs and the acceptance, and
speculation switches itself off where it cannot pay (no model involved)."""

from __future__ import annotations

import pytest

from arbitrage.backends.speculation import (
    PriorCosts,
    SpeculationConfig,
    SpeculationController,
    SpeculationStats,
)
from arbitrage.errors import ConfigError


def feed(
    controller: SpeculationController,
    *,
    decode: float,
    per_extra: float,
    proposer: float,
    accept: float,
    rounds: int = 40,
) -> None:
    """Observe plain decodes and rounds at every k, with the given costs and a per-token acceptance."""
    for _ in range(4):
        controller.observe_plain(decode)
    for i in range(rounds):
        k = 1 + i % 4
        accepted = 0
        while accepted < k and (i * 7919 + accepted * 104729) % 1000 < accept * 1000:
            accepted += 1
        controller.observe_round(k, accepted, proposer * k, decode + per_extra * k)


def test_cheap_proposer_and_cheap_batches_speculate() -> None:
    controller = SpeculationController(SpeculationConfig(k_max=6))
    feed(controller, decode=0.040, per_extra=0.002, proposer=0.004, accept=0.9)
    assert controller.alpha is not None and controller.alpha > 0.7
    assert controller.next_k() >= 2
    assert controller.rate(controller.next_k()) > controller.rate(0)  # type: ignore[operator]


def test_costs_of_this_cpu_switch_speculation_off_for_good() -> None:
    # measured on the 2-core CPU: a batch of n costs ~0.8 decodes per extra token, the draft 0.55 of one;
    # even a perfect acceptance could not pay, so no probe is made: none could change the verdict
    controller = SpeculationController(SpeculationConfig(k_max=6, probe_every=10))
    feed(controller, decode=0.042, per_extra=0.033, proposer=0.023, accept=0.9)
    assert controller.best_k() == 0
    assert controller.rate(1, 1.0) < controller.rate(0)  # type: ignore[operator]
    assert controller.hopeless()
    for _ in range(200):
        assert controller.next_k() == 0
        controller.observe_plain(0.042)
    # plain decoding slows down (a longer context, a busier machine) until a perfect acceptance would
    # pay again at the batch costs measured: probing resumes
    for _ in range(400):
        controller.observe_plain(0.2)
    assert not controller.hopeless()
    assert controller.next_k() >= 1


def test_where_only_the_acceptance_is_low_it_probes_again_with_a_growing_wait() -> None:
    # cheap batches, an expensive proposer and a low acceptance: speculation is off, but a better
    # acceptance would pay, so it re-measures now and then
    controller = SpeculationController(SpeculationConfig(k_max=6, probe_every=10))
    feed(controller, decode=0.040, per_extra=0.002, proposer=0.020, accept=0.05)
    assert controller.best_k() == 0 and not controller.hopeless()
    for _ in range(10):  # decoding plainly: after probe_every tokens it tries k = 1 once
        controller.observe_plain(0.040)
    assert controller.next_k() == 1
    controller.observe_round(1, 0, 0.020, 0.042)
    assert controller.next_k() == 0
    # the probe found it still not paying: the next probe waits twice as long
    for _ in range(19):
        controller.observe_plain(0.040)
    assert controller.next_k() == 0
    controller.observe_plain(0.040)
    assert controller.next_k() == 1


def test_low_acceptance_switches_off_even_with_cheap_batches() -> None:
    controller = SpeculationController()
    feed(controller, decode=0.040, per_extra=0.002, proposer=0.020, accept=0.05)
    assert controller.best_k() == 0


def test_plain_decoding_is_measured_before_the_first_round() -> None:
    controller = SpeculationController(SpeculationConfig(k_start=3, warmup_rounds=2))
    assert controller.next_k() == 0
    controller.observe_plain(0.04)
    controller.observe_plain(0.04)
    assert controller.next_k() == 3  # warm-up rounds at k_start
    controller.observe_round(3, 3, 0.01, 0.05)
    controller.observe_round(3, 3, 0.01, 0.05)
    assert controller.next_k() == controller.best_k()


def test_prior_costs_that_cannot_pay_never_start() -> None:
    # this CPU: even if every proposal were kept, a round costs more than the tokens it gives
    prior = PriorCosts(decode=0.04, batch_token=0.035, proposer=0.025)
    assert SpeculationController(SpeculationConfig(), prior).next_k() == 0


def test_prior_costs_that_can_pay_measure_acceptance_at_k_start() -> None:
    prior = PriorCosts(decode=0.04, batch_token=0.002, proposer=0.004)
    controller = SpeculationController(SpeculationConfig(k_start=3), prior)
    assert controller.next_k() == 3
    for _ in range(6):
        controller.observe_round(3, 0, 0.012, 0.046)  # nothing accepted: not worth it
    assert controller.next_k() == 0


def test_fixed_k_never_adapts() -> None:
    controller = SpeculationController(SpeculationConfig(adaptive=False, k_start=4))
    feed(controller, decode=0.04, per_extra=0.04, proposer=0.04, accept=0.0)
    assert controller.next_k() == 4


def test_alpha_counts_runs_cut_at_k() -> None:
    controller = SpeculationController()
    for _ in range(10):
        controller.observe_round(4, 4, 0.0, 0.1)  # every proposal accepted: no rejection seen
    assert controller.alpha == 1.0
    controller = SpeculationController()
    for _ in range(10):
        controller.observe_round(4, 0, 0.0, 0.1)
    assert controller.alpha == 0.0


def test_verify_seconds_interpolates_untried_batch_sizes() -> None:
    controller = SpeculationController()
    controller.observe_plain(0.04)
    controller.observe_round(3, 1, 0.01, 0.10)  # batch of 4
    assert controller.verify_seconds(4) == pytest.approx(0.10)
    assert controller.verify_seconds(2) == pytest.approx(0.04 + 0.06 / 3)


def test_stats_add_and_acceptance() -> None:
    a, b = SpeculationStats(), SpeculationStats()
    a.observe_round(3, 2, 0.01, 0.02)
    b.observe_round(2, 2, 0.01, 0.02)
    b.observe_plain()
    a.add(b)
    assert (a.rounds, a.proposed, a.accepted, a.plain_tokens) == (2, 5, 4, 1)
    assert a.acceptance == pytest.approx(0.8)
    assert a.to_dict()["k"] == [3, 2]


@pytest.mark.parametrize(
    "kwargs", [{"k_start": 0}, {"k_start": 9, "k_max": 4}, {"probe_every": 0}, {"decay": 1.0}]
)
def test_bad_config_is_one_clear_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SpeculationConfig(**kwargs)  # type: ignore[arg-type]
