"""bench-costs on scripted models: the measured coefficients follow the simulated per-token costs."""

from __future__ import annotations

import pytest

from arbitrage.backends.base import FinishReason
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.evaluation.costbench import measure_costs

STEP = (" ".join(f"w{i}" for i in range(30)), FinishReason.LENGTH)


def test_measured_decode_costs_follow_the_models() -> None:
    draft = ScriptedGenerator("d", lambda _ctx: STEP, seconds_per_token=0.002)
    target = ScriptedGenerator("t", lambda _ctx: STEP, seconds_per_token=0.01)
    costs = measure_costs(draft, target, tokens=30, repeats=2)
    assert costs.source == "bench"
    assert costs.target.decode == pytest.approx(0.01 * 30 / 29, rel=1e-6)
    assert costs.ratio == pytest.approx(0.2, rel=1e-6)
    # the scripted target verifies at a tenth of decoding: no extra cost per batched token
    assert costs.target.batch_extra == 0.0
