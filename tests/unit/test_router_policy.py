"""The router policy with scripted generators: the target runs only for escalated steps, τ and
--target-rate behave as documented, and bad options give clear errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from arbitrage.backends.base import StepOutput
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.cli.options import flag_errors, policy_choice
from arbitrage.engine import Engine
from arbitrage.errors import ArbitrageError, ConfigError, PolicyOptionError
from arbitrage.policies import RouterOptions, build_policy, policy_options
from arbitrage.policies.router import RouterPolicy, packaged_router
from arbitrage.router.base import Router, RouterExample
from arbitrage.router.data import read_pairs
from arbitrage.router.labels import fit_scheme
from arbitrage.router.store import load_router, save_router
from arbitrage.router.train import TrainOptions, train_router
from arbitrage.trace import StepRecord
from tests.router_synth import synthetic_pairs, write_pairs

DRAFT_SCRIPT = [
    "First, note the data.",
    "Hmm wait, maybe 3 + 4 = 8.",
    "So 3 + 4 = 7.",
    "The answer is \\boxed{7}.",
]
TARGET_SCRIPT = ["T first.", "T: 3 + 4 = 7.", "T so.", "T: \\boxed{7}."]


class ScoreByKeyword:
    """A fake router: ŷ = 0.9 for steps with "wait", else 0.1; records what it saw."""

    kind = "fake"
    scheme = fit_scheme([-0.1, 0.1], 2)
    annotate = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[str, ...], str]] = []

    def score(self, question: str, history: Sequence[StepRecord], draft_step: StepOutput) -> float:
        self.seen.append((question, tuple(s.role for s in history), draft_step.text))
        return 0.9 if "wait" in draft_step.text else 0.1

    def score_batch(self, examples: Sequence[RouterExample]) -> np.ndarray:
        return np.array([0.9 if "wait" in e.draft_text else 0.1 for e in examples])


def solve(policy: RouterPolicy) -> tuple[ScriptedGenerator, ScriptedGenerator, list[StepRecord]]:
    draft, target = ScriptedGenerator("draft", DRAFT_SCRIPT), ScriptedGenerator("target", TARGET_SCRIPT)
    trace = Engine(draft, target, policy).solve("Ann has 3 apples and buys 4. How many?")
    return draft, target, trace.steps


def test_router_policy_calls_the_target_only_when_it_escalates() -> None:
    router = ScoreByKeyword()
    assert isinstance(router, Router)
    draft, target, steps = solve(RouterPolicy(router, tau=0.5))
    assert [s.role for s in steps] == ["draft", "target", "draft", "draft"]
    assert len(target.calls) == 1 and len(draft.calls) == 4
    assert steps[1].text == TARGET_SCRIPT[1]
    assert steps[1].decision.score == 0.9 and steps[1].decision.threshold == 0.5
    assert steps[0].target is None and steps[2].target is None  # nothing generated for accepted steps
    # the router saw the routing history as it was at each decision
    assert [roles for _, roles, _ in router.seen] == [
        (),
        ("draft",),
        ("draft", "target"),
        ("draft", "target", "draft"),
    ]
    assert all(s.policy_seconds >= 0 for s in steps)


@pytest.mark.parametrize(("tau", "escalated"), [(0.0, 4), (0.1, 1), (0.9, 0), (1.0, 0)])
def test_escalate_strictly_above_tau(tau: float, escalated: int) -> None:
    _, target, steps = solve(RouterPolicy(ScoreByKeyword(), tau=tau))
    assert sum(s.escalated for s in steps) == escalated == len(target.calls)


def test_tau_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"--tau must be within \[0, 1\]"), flag_errors():
        RouterPolicy(ScoreByKeyword(), tau=1.5)
    with pytest.raises(PolicyOptionError, match=r"^tau must be within \[0, 1\]"):  # the library's words
        RouterPolicy(ScoreByKeyword(), tau=1.5)


@pytest.fixture(scope="module")
def saved_router(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("router")
    rows = read_pairs(write_pairs(tmp / "pairs", synthetic_pairs(questions=80, signal="features")))
    trained = train_router(rows, TrainOptions())
    return save_router(tmp / "router", trained.router, trained.config, trained.split)


def test_build_policy_with_target_rate_picks_tau_from_the_table(saved_router: Path) -> None:
    loaded = load_router(saved_router)
    for rate in (0.1, 0.3, 0.6):
        policy = build_policy("router", RouterOptions(path=str(saved_router), target_rate=rate))
        assert isinstance(policy, RouterPolicy)
        row = loaded.tau_for_rate(rate)
        assert policy.tau == row.tau and abs(row.rate - rate) < 0.05
        assert policy.name == f"router(features,tau={row.tau:.4g},rate={rate:g})"
    fixed = build_policy("router", RouterOptions(path=str(saved_router), tau=0.42))
    assert isinstance(fixed, RouterPolicy) and fixed.tau == 0.42 and fixed.target_rate is None


def test_trained_router_routes_scripted_solves(saved_router: Path) -> None:
    policy = build_policy("router", RouterOptions(path=str(saved_router), target_rate=0.5))
    assert isinstance(policy, RouterPolicy)
    _, target, steps = solve(policy)
    assert len(target.calls) == sum(s.escalated for s in steps)
    for step in steps:
        assert step.decision.score is not None and 0.0 <= step.decision.score <= 1.0
        assert step.escalated == (step.decision.score > policy.tau)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, r"needs --tau τ .* or --target-rate"),
        ({"path": ""}, "needs --router PATH"),
        ({"path": "/no/such/router", "tau": 0.5}, "Router folder not found"),
        ({"path": "x", "tau": 0.3, "target_rate": 0.2}, "either --tau or --target-rate"),
        ({"path": "x", "target_rate": 1.5}, r"--target-rate must be within \[0, 1\]"),
        ({"path": "x", "tau": -0.5}, r"--tau must be within \[0, 1\]"),
    ],
)
def test_router_policy_option_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ArbitrageError, match=message), flag_errors():
        build_policy("router", policy_options("router", options))


def test_without_a_path_the_packaged_router_is_loaded() -> None:
    """The router installed with the package: the combined router, which reads the target's verification
    of each step, with its own τ table."""
    packaged = packaged_router()
    assert packaged.is_dir() and packaged.parts[-2:] == ("data", "router")
    loaded = load_router(packaged)
    assert loaded.config["inputs"] == "both"
    policy = build_policy("router", RouterOptions(target_rate=0.4))
    assert isinstance(policy, RouterPolicy) and policy.needs_verification
    assert policy.source == str(packaged) and policy.tau == loaded.tau_for_rate(0.4).tau


def test_no_packaged_router_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("arbitrage.policies.router.PACKAGED_ROUTER", "no_such_router")
    message = r"No router is installed with the package: give .* --router PATH"
    with pytest.raises(ArbitrageError, match=message), flag_errors():
        build_policy("router", policy_options("router", {"tau": 0.5}))


def test_a_router_without_tau_or_target_rate_is_an_error_never_tau_0() -> None:
    with pytest.raises(PolicyOptionError, match=r"needs tau τ .* or target_rate") as info:
        RouterOptions(path="r")
    assert info.value.options == ("tau", "target_rate")
    server = info.value.render(lambda n: f"policy_options.{n}")
    assert "policy_options.tau" in server and "policy_options.target_rate" in server


def cli_options(policy: str, router: Path | None, tau: float | None, target_rate: float | None) -> object:
    """What `arbitrage solve/eval` build from their flags (p=0.5, seed=0 as the defaults)."""
    _, options = policy_choice(policy, p=0.5, seed=0, path=router, tau=tau, target_rate=target_rate)
    return options


def test_cli_policy_options() -> None:
    options = cli_options("router", Path("r"), None, 0.3)
    assert isinstance(options, RouterOptions)
    # not given stays not given (the old bag of options turned a missing τ into 0.0)
    assert options.path == "r" and options.target_rate == 0.3 and options.tau is None
    assert cli_options("router", Path("r"), 0.7, None).tau == 0.7
    with pytest.raises(ConfigError, match=r"needs --tau τ .* or --target-rate"):
        cli_options("router", Path("r"), None, None)
    with pytest.raises(ConfigError, match="not both"):
        cli_options("router", Path("r"), 0.5, 0.3)
    with pytest.raises(ConfigError, match="--policy router only"):
        cli_options("random", Path("r"), None, None)


def test_sweep_points_for_the_router(saved_router: Path) -> None:
    from arbitrage.evaluation.sweep import parse_points, point_options

    points = parse_points("draft; router:target_rate=0.1,0.5; router:tau=0.7")
    assert [(p.policy, p.param, p.value) for p in points[1:]] == [
        ("router", "target_rate", 0.1), ("router", "target_rate", 0.5), ("router", "tau", 0.7)
    ]  # fmt: skip
    base = {"path": str(saved_router), "seed": 0}  # the sweep's base values; each policy takes its own
    for point in points[1:]:
        assert point.param is not None
        policy = build_policy("router", point_options(point, base))
        assert isinstance(policy, RouterPolicy)
