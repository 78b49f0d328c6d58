"""Step cache, sweep grids and reports on scripted models and hand-built points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.backends.base import FinishReason, Replayer, StepContext, StepOutput, StepParams
from arbitrage.backends.cache import CachingGenerator, StepCache
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.engine import EngineConfig
from arbitrage.errors import ConfigError
from arbitrage.evaluation.datasets import Problem
from arbitrage.evaluation.report import Point, build_report, latency_at, speedups, unmatched
from arbitrage.evaluation.report import load_points as build_report_points
from arbitrage.evaluation.sweep import (
    SweepPoint,
    label_points,
    parse_points,
    parse_variant,
    point_options,
    run_sweep,
    sweep_policies,
)


def test_step_cache_replays_with_stored_costs(tmp_path: Path) -> None:
    inner = ScriptedGenerator("m", ["one two", "three"], seconds_per_token=0.5)
    cache = StepCache(tmp_path / "c.sqlite")
    gen = CachingGenerator(inner, cache)
    ctx, params = StepContext("q"), StepParams()
    live = gen.generate_step(ctx, params)
    replay = gen.generate_step(ctx, params)
    assert len(inner.calls) == 1 and gen.hits == 1 and gen.misses == 1
    assert replay.text == live.text and replay.decode_seconds == live.decode_seconds == 1.0
    assert replay.finish_reason == FinishReason.STEP and replay.extra["replayed"] is True
    assert "replayed" not in live.extra
    # other parameters, other context or another model id miss
    gen.generate_step(ctx, StepParams(max_step_tokens=5))
    gen.generate_step(StepContext("q", ("one two",)), params)
    CachingGenerator(inner, cache, model_id="other").generate_step(ctx, params)
    assert len(inner.calls) == 4
    # unseeded sampling is never cached
    gen.generate_step(ctx, StepParams(temperature=0.7))
    gen.generate_step(ctx, StepParams(temperature=0.7))
    assert len(inner.calls) == 6
    cache.close()
    reopened = StepCache(tmp_path / "c.sqlite")
    assert len(reopened) == 4


def test_parse_points() -> None:
    points = parse_points("draft; target; random:p=0.25,0.5")
    assert [p.slug for p in points] == ["draft", "target", "random_p=0.25", "random_p=0.5"]
    for bad in ("random:q=1", "random:p=abc", "random:p", "", "random:threshold=0.5", "rsd:path=1", "nope"):
        with pytest.raises(ConfigError):
            parse_points(bad)


def test_variants_run_one_policy_with_other_fixed_options_as_a_family_of_its_own() -> None:
    points = parse_points("random:p=0.5; random@other:p=0.5; draft@again")
    assert [(p.slug, p.family) for p in points] == [
        ("random_p=0.5", "random"), ("random@other_p=0.5", "random@other"), ("draft@again", "draft@again")
    ]  # fmt: skip
    name, values = parse_variant(" other : seed = 7 ")
    assert (name, values) == ("other", {"seed": "7"})
    options = point_options(points[1], {"seed": 1}, {"other": values})
    assert (options.p, options.seed) == (0.5, 7)  # the variant's option over the base, coerced
    assert point_options(points[0], {"seed": 1}, {"other": values}).seed == 1
    with pytest.raises(ConfigError, match="variant 'other', which no variant defines"):
        point_options(points[1], {}, {})
    with pytest.raises(ConfigError, match="sets 'threshold', not an option of the random policy"):
        point_options(points[1], {}, {"other": {"threshold": "0.5"}})
    for bad in ("random:p=0.5; random:p=0.5", "random@:p=0.5", "random@a b:p=0.5"):
        with pytest.raises(ConfigError):
            parse_points(bad)
    for bad in ("other", "other:", "other: seed", "other: =3", "a b: seed=1"):
        with pytest.raises(ConfigError):
            parse_variant(bad)


def test_a_label_names_every_point_of_a_run_as_a_family_of_its_own() -> None:
    points, variants = label_points(parse_points("target; auto:quality=1,0.5"), {}, "lossless")
    assert [(p.slug, p.family) for p in points] == [
        ("target@lossless", "target@lossless"),
        ("auto@lossless_quality=1", "auto@lossless"),
        ("auto@lossless_quality=0.5", "auto@lossless"),
    ]
    assert variants == {"lossless": {}}
    assert point_options(points[2], {"seed": 1}, variants).quality == 0.5
    with pytest.raises(ConfigError, match="take no variant"):
        label_points(parse_points("random@other:p=0.5"), {}, "lossless")
    with pytest.raises(ConfigError, match="also a variant"):
        label_points(parse_points("target"), {"lossless": {"seed": "1"}}, "lossless")
    with pytest.raises(ConfigError, match="Bad label"):
        label_points(parse_points("target"), {}, "a b")


def test_run_sweep_shares_the_cache_between_points(tmp_path: Path) -> None:
    draft = ScriptedGenerator(
        "d", lambda c: ("d step" if len(c.steps) < 2 else "\\boxed{2}", FinishReason.STEP)
    )
    target = ScriptedGenerator(
        "t", lambda c: ("t step" if len(c.steps) < 2 else "\\boxed{2}", FinishReason.STEP)
    )
    cache = StepCache(tmp_path / "cache.sqlite")
    cd, ct = CachingGenerator(draft, cache), CachingGenerator(target, cache)
    problems = [Problem("0", "one plus one", "2", "toy"), Problem("1", "two minus zero", "2", "toy")]
    points = [SweepPoint("draft"), SweepPoint("target"), SweepPoint("random", "p", 0.5)]
    pairs = sweep_policies(points, {})
    results = run_sweep(problems, cd, ct, pairs, tmp_path, EngineConfig(), {"data": "toy"})
    assert [s.accuracy for _, s in results] == [1.0, 1.0, 1.0]
    assert results[2][1].replayed_calls > 0  # the random point replays steps the first two generated
    for gen in (draft, target):  # every distinct context was generated once, whatever point asked
        keys = [(c.question, c.steps) for c in gen.calls]
        assert len(keys) == len(set(keys))
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert [d["point"] for d in data] == ["draft", "target", "random_p=0.5"]
    # a later run into the same folder that reaches only some points (a stopped block, a subset) keeps the
    # others in sweep.json, in place, and replaces the ones it ran
    more = [*problems, Problem("2", "three minus one", "2", "toy")]
    run_sweep(
        more, cd, ct, sweep_policies([SweepPoint("target")], {}), tmp_path, EngineConfig(), {"data": "toy"}
    )
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert [d["point"] for d in data] == ["draft", "target", "random_p=0.5"]
    assert [d["problems"] for d in data] == [2, 3, 2]
    assert [p.key for p in build_report_points(tmp_path)] == ["draft", "target", "random_p=0.5"]


def test_the_baselines_run_before_the_mixing_points_and_write_their_own_steps(tmp_path: Path) -> None:
    def script(name: str) -> ScriptedGenerator:
        return ScriptedGenerator(
            name, lambda c: (f"{name} step" if len(c.steps) < 2 else "\\boxed{2}", FinishReason.STEP)
        )

    draft, target = script("d"), script("t")
    cache = StepCache(tmp_path / "cache.sqlite")
    cd, ct = CachingGenerator(draft, cache), CachingGenerator(target, cache)
    problems = [Problem("0", "one plus one", "2", "toy")]
    # listed last, target-only still runs first: the random point (p=1 escalates every step, writing
    # exactly target-only's contexts) must not be the one whose stored steps target-only replays
    points = [SweepPoint("random", "p", 1.0), SweepPoint("target"), SweepPoint("draft")]
    results = run_sweep(
        problems, cd, ct, sweep_policies(points, {}), tmp_path, EngineConfig(), {"data": "toy"}
    )
    assert [p.slug for p, _ in results] == ["random_p=1", "target", "draft"]  # the grid's order
    by_slug = {p.slug: s for p, s in results}
    assert by_slug["target"].replayed_calls == 0 and by_slug["draft"].replayed_calls == 0
    assert by_slug["random_p=1"].replayed_calls > 0  # it replays target-only's steps, not the reverse
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert [d["point"] for d in data] == ["random_p=1", "target", "draft"]


def pt(family: str, acc: float, lat: float, acc_rate: float = 0.5) -> Point:
    return Point(family, f"{family}@{lat}", acc, acc_rate, lat, lat, 1 - acc_rate, 10, 4)


def test_latency_at_interpolates_the_frontier() -> None:
    curve = [pt("rsd", 0.4, 10), pt("rsd", 0.5, 20), pt("rsd", 0.45, 30), pt("rsd", 0.6, 40)]
    assert latency_at(curve, 0.4) == 10
    assert latency_at(curve, 0.45) == pytest.approx(
        15
    )  # between (0.4, 10) and (0.5, 20); (0.45, 30) is dominated
    assert latency_at(curve, 0.55) == pytest.approx(30)
    assert latency_at(curve, 0.7) is None


def test_speedups_at_matched_accuracy() -> None:
    points = [pt("target", 0.6, 40, 0.0), pt("draft", 0.3, 10, 1.0), pt("router", 0.5, 15), pt("router", 0.6, 20),
              pt("rsd", 0.5, 25), pt("rsd", 0.6, 30)]  # fmt: skip
    rows = {(r["policy"], r["versus"]): r for r in speedups(points)}
    assert rows[("router", "rsd")]["matched_accuracy"] == 0.6
    assert rows[("router", "rsd")]["speedup"] == pytest.approx(1.5)
    assert rows[("router", "target")]["speedup"] == pytest.approx(2.0)
    assert rows[("rsd", "target")]["speedup"] == pytest.approx(40 / 30)
    assert rows[("router", "rsd")]["median_speedup"] == pytest.approx(1.5)  # pt() sets median = mean


def test_speedups_use_medians_separately_and_name_unmatched_pairs() -> None:
    def point(family: str, acc: float, mean: float, median: float) -> Point:
        return Point(family, f"{family}@{mean}", acc, 0.5, mean, median, 0.5, 10, 4)

    points = [point("target", 0.6, 40, 30), point("router", 0.4, 20, 10), point("router", 0.5, 30, 12),
              point("rsd", 0.5, 33, 24)]  # fmt: skip
    rows = {(r["policy"], r["versus"]): r for r in speedups(points)}
    assert rows[("router", "rsd")]["speedup"] == pytest.approx(1.1)
    assert rows[("router", "rsd")]["median_speedup"] == pytest.approx(2.0)
    assert ("router", "target") not in rows and ("rsd", "target") not in rows
    assert unmatched(points) == [
        "router vs target: no matched accuracy; router's best accuracy 0.500 is below target's 0.600.",
        "rsd vs target: no matched accuracy; rsd's best accuracy 0.500 is below target's 0.600.",
    ]


def test_build_report_writes_plots_and_markdown(tmp_path: Path) -> None:
    rows = []
    for family, value, acc, acceptance, lat in [("draft", None, 0.3, 1.0, 10.0), ("target", None, 0.6, 0.0, 40.0),
                                                ("rsd", 0.5, 0.5, 0.6, 25.0), ("rsd", 0.9, 0.58, 0.2, 35.0)]:  # fmt: skip
        rows.append({"point": family, "policy_name": family, "param": None, "value": value, "policy": family,
                     "accuracy": acc, "acceptance_rate": acceptance, "latency_mean_s": lat, "latency_median_s": lat,
                     "target_call_rate": 1 - acceptance, "escalations": 10, "wasted_escalations": 4})  # fmt: skip
    (tmp_path / "sweep.json").write_text(json.dumps(rows))
    report = build_report(tmp_path).read_text()
    assert (tmp_path / "accuracy_vs_acceptance.png").stat().st_size > 1000
    assert (tmp_path / "accuracy_vs_latency.png").stat().st_size > 1000
    assert "| rsd | target | 0.600 |" not in report  # rsd never reaches the target's 0.6
    assert "rsd vs target: no matched accuracy; rsd's best accuracy 0.580 is below target's 0.600." in report
    assert "RSD waste" in report and "| 0.400 |" in report
    with pytest.raises(ConfigError, match="No sweep results"):
        build_report(tmp_path / "missing")


def test_accuracy_at_acceptance_and_curve_comparison() -> None:
    from arbitrage.evaluation.report import accuracy_at_acceptance, curve_comparison

    router = [pt("router", 0.5, 10, 0.8), pt("router", 0.7, 20, 0.4)]
    rsd = [pt("rsd", 0.55, 12, 0.6), pt("rsd", 0.5, 15, 0.3), pt("rsd", 0.4, 9, 0.9)]
    assert accuracy_at_acceptance(router, 0.6) == pytest.approx(0.6)
    assert accuracy_at_acceptance(router, 0.9) is None  # outside the router's range
    rows = curve_comparison(router + rsd, "router", "rsd")
    assert [r["acceptance"] for r in rows] == [0.6]  # only rsd's 0.6 lies within [0.4, 0.8]
    assert rows[0]["difference"] == pytest.approx(0.05)
    reverse = curve_comparison(router + rsd, "rsd", "router")  # rsd interpolated at the router's points
    assert [r["acceptance"] for r in reverse] == [0.4, 0.8]
    assert [r["difference"] for r in reverse] == pytest.approx([0.5 + 0.05 / 3 - 0.7, 0.45 - 0.5])


def sweep_rows(
    points: list[tuple[str, float, float, float]], calls: tuple[int, int, int, int] = (0, 10, 0, 0)
) -> list[dict]:
    """``sweep.json`` rows for report tests, one per (family, accuracy, acceptance, mean latency); a family
    ``policy@variant`` is a variant's point. ``calls``: replayed / live model calls, replayed / live PRM calls."""
    replayed, live, replayed_prm, live_prm = calls
    rows = []
    for family, acc, acceptance, lat in points:
        policy, _, variant = family.partition("@")
        rows.append({"point": f"{family}{lat}", "policy_name": policy, "variant": variant or None,
                     "family": family, "param": None, "value": None, "policy": f"{policy}({lat})",
                     "accuracy": acc, "accuracy_ci": [acc - 0.1, acc + 0.1], "problems": 100,
                     "acceptance_rate": acceptance, "latency_mean_s": lat, "latency_median_s": lat,
                     "target_call_rate": 1 - acceptance, "escalations": 10, "wasted_escalations": None,
                     "replayed_calls": replayed, "live_calls": live, "replayed_prm_calls": replayed_prm,
                     "live_prm_calls": live_prm})  # fmt: skip
    return rows


def test_report_names_replayed_calls_and_compares_curves(tmp_path: Path) -> None:
    points = [("target", 0.6, 0.0, 40.0), ("router", 0.5, 0.8, 15.0), ("router", 0.6, 0.4, 25.0),
              ("rsd", 0.5, 0.6, 25.0)]  # fmt: skip
    rows = sweep_rows(points, calls=(7, 3, 5, 2))
    (tmp_path / "sweep.json").write_text(json.dumps(rows))
    report = build_report(tmp_path).read_text()
    assert "| 7 / 3 | 5 / 2 |" in report and "[0.50, 0.70]" in report
    assert "router is above rsd at 1 of 1" in report
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert curves["router_vs_rsd"][0]["difference"] == pytest.approx(0.05)


def test_report_compares_verify_points_with_rsd_and_target(tmp_path: Path) -> None:
    rows = sweep_rows([("target", 0.6, 0.0, 40.0), ("verify", 0.5, 0.8, 15.0), ("verify", 0.6, 0.4, 25.0),
                       ("rsd", 0.5, 0.6, 25.0)])  # fmt: skip
    (tmp_path / "sweep.json").write_text(json.dumps(rows))
    build_report(tmp_path)
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert curves["verify_vs_rsd"][0]["difference"] == pytest.approx(0.05)
    pairs = {(r["policy"], r["versus"]) for r in json.loads((tmp_path / "speedups.json").read_text())}
    assert {("verify", "rsd"), ("verify", "target")} <= pairs


def test_report_compares_a_variant_with_its_plain_family_and_the_others(tmp_path: Path) -> None:
    from arbitrage.evaluation.report import curve_pairs

    rows = sweep_rows([("target", 0.6, 0.0, 40.0), ("router", 0.5, 0.8, 15.0), ("router", 0.6, 0.4, 25.0),
                       ("router@both", 0.55, 0.8, 16.0), ("router@both", 0.7, 0.4, 26.0),
                       ("rsd", 0.5, 0.6, 25.0), ("draft", 0.2, 1.0, 10.0)])  # fmt: skip
    (tmp_path / "sweep.json").write_text(json.dumps(rows))
    families = {p.family for p in build_report_points(tmp_path)}
    assert families == {"draft", "target", "router", "router@both", "rsd"}
    assert curve_pairs(["rsd", "router@both", "router", "target"]) == [
        ("router", "rsd"), ("router@both", "rsd"), ("rsd", "router"), ("rsd", "router@both"),
        ("router@both", "router"),
    ]  # fmt: skip
    report = build_report(tmp_path).read_text()
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert curves["router@both_vs_rsd"][0]["difference"] == pytest.approx(0.125)  # 0.625 at 0.6 vs 0.5
    assert curves["router@both_vs_router"][0]["difference"] == pytest.approx(0.1)  # at 0.4: 0.7 vs 0.6
    pairs = {(r["policy"], r["versus"]) for r in json.loads((tmp_path / "speedups.json").read_text())}
    assert {("router", "router@both"), ("router@both", "rsd"), ("router@both", "target")} <= pairs
    assert "## router@both vs router" in report
    assert "| router@both(16.0) |" in report and "| router(15.0) |" in report  # the variant names its points
    lifts = {r["point"] for r in json.loads((tmp_path / "comparisons.json").read_text())["random_lift"]}
    assert {"router@both(16.0)", "router(15.0)"} <= lifts


class ReplayingScripted(ScriptedGenerator):
    """A scripted model that can replay: records the replays and charges a fixed live prefill."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.replays: list[tuple[StepContext, str]] = []

    def replay_step(self, context: StepContext, params: StepParams, output: StepOutput) -> tuple[int, float]:
        self.replays.append((context, output.text))
        return 7, 0.25


def test_a_replayed_step_is_charged_the_live_prefill_when_the_model_can_replay(tmp_path: Path) -> None:
    inner = ReplayingScripted("m", ["one two", "three"], seconds_per_token=0.5)
    assert isinstance(inner, Replayer)
    cache = StepCache(tmp_path / "c.sqlite")
    gen = CachingGenerator(inner, cache)
    ctx, params = StepContext("q"), StepParams()
    live = gen.generate_step(ctx, params)
    assert inner.replays == []
    replay = gen.generate_step(ctx, params)
    assert inner.replays == [(ctx, live.text)]  # the model was brought to where the live call left it
    assert replay.text == live.text and replay.decode_seconds == live.decode_seconds
    assert (replay.prefill_tokens, replay.prefill_seconds) == (7, 0.25)  # measured now, not stored
    assert replay.extra["replay_prefill"] == "live" and replay.extra["replayed"] is True
    # a model that cannot replay keeps the stored costs, and says so
    plain = CachingGenerator(ScriptedGenerator("m", ["one two"]), cache)
    stored = plain.generate_step(ctx, params)
    assert stored.extra["replay_prefill"] == "stored"
    assert stored.prefill_seconds == live.prefill_seconds


def test_the_standard_sweep_grid_parses_with_a_router_variant() -> None:
    import shlex
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    router = root / "data" / "routers" / "features"
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "gsm8k_sweep.py"), "--dry-run", "--limit", "10",
         "--router", str(router), "--router-variant", f"both={router}"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    sweep = shlex.split(result.stdout.splitlines()[0][2:])
    grid = sweep[sweep.index("--points") + 1]
    variant = [sweep[sweep.index("--variant") + 1]]
    points = parse_points(grid)
    assert [p.slug for p in points if p.policy == "router"] == [
        f"router{v}_target_rate={r}" for v in ("", "@both") for r in (0.2, 0.4, 0.6)
    ]
    name, values = parse_variant(" ".join(variant))
    assert (name, values) == ("both", {"path": str(router)})


def test_the_fast_path_sweep_runs_parse_and_label_apart() -> None:
    import shlex
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "gsm8k_sweep.py"), "--fast-path", "--dry-run", "--limit", "10"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    sweeps = [shlex.split(line[2:]) for line in result.stdout.splitlines() if " sweep " in line]
    slugs: list[str] = []
    for argv in sweeps:
        points = parse_points(argv[argv.index("--points") + 1])
        if "--label" in argv:
            assert "--speculate" in argv
            points, _ = label_points(points, {}, argv[argv.index("--label") + 1])
        slugs += [p.slug for p in points]
    assert len(slugs) == len(set(slugs)) == 19  # one folder each: no run overwrites another's point
    assert {
        "target",
        "target@lossless",
        "auto_quality=1",
        "early_target_rate=0.2",
        "rsd_threshold=0.9",
        "early@first_target_rate=0.2",
    } <= set(slugs)
    assert any("sweep_server_row.py" in line for line in result.stdout.splitlines())
    # target-only is measured live: no replay charges it a mixing point's stored cost
    live = [argv for argv in sweeps if "--no-cache" in argv]
    assert [argv[argv.index("--points") + 1] for argv in live] == ["target"]
