"""The standard sweep: every policy on the same GSM8K test problems with the default local models.

Runs ``arbitrage sweep`` over draft-only, target-only, the random control at several escalation
probabilities p, RSD over thresholds with the waste diagnosis, the oracle, and the router over target
rates when a trained router is given, then ``arbitrage report``, and prints the report's tables. The
random points measure the control every policy is judged against: the report gives each point its
accuracy lift over random mixing at the same acceptance rate, with a paired bootstrap interval.

It runs in blocks of problems (every point on the first 10, then on the first 20, ...), so a stopped
run still compares every point on the same problems, and it is resumable: a killed run picks up where
it stopped (the sweep keeps one JSON line per problem and point, and a step cache); rerun the same
command.

    python benchmarks/gsm8k_sweep.py                      # 100 problems -> benchmarks/results/gsm8k_sweep
    python benchmarks/gsm8k_sweep.py --quick              # 20 problems  -> benchmarks/results/gsm8k_sweep_quick
    python benchmarks/gsm8k_sweep.py --router runs/routers/features
    python benchmarks/gsm8k_sweep.py --router data/routers/features --router-variant both=runs/routers/both

``--fast-path`` runs the standard sweep of the fast path instead (into ``benchmarks/results/gsm8k_sweep_v3``):
target-only first, measured live (``--no-cache``: a replayed target step would be charged the cost stored
by a mixing point, whose context was not in the target's KV cache), then draft-only, the random control,
RSD, ``verify`` and ``early`` at three settings each, and ``early`` at its lowest rate with the target
writing every answer's first step (``early@first``, ``--target-steps 1``), in one run sharing a step
cache, then target-only with token-level speculation (``--speculate --label lossless``:
``target@lossless``) and ``auto`` at three quality budgets, each in a run of its own (a speculating target
keeps its own cache entries), all in the serving mode and into one folder, block by block, each block
followed by ``llama-server`` target alone on the same problems (``benchmarks/sweep_server_row.py``: its
row and summary in ``llama_server/``)::

    python benchmarks/gsm8k_sweep.py --fast-path          # 100 problems -> benchmarks/results/gsm8k_sweep_v3

``--router-variant NAME=PATH`` (repeatable) adds a second router's points next to ``--router``'s, as the
report's family ``router@NAME`` (e.g. a router on the target's verification of the step).

The RSD thresholds span the default PRM's (judge+arith) rewards of draft steps: on the collected GSM8K-train
pairs (data/collect/gsm8k-train) 33% fall below 0.7, 61% below 0.8 and 91% below 0.9, so the RSD points
escalate from about a third to almost all of the steps (0.3 and 0.5, at 4% and ~15%, sit next to
draft-only and were dropped).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from arbitrage.errors import RouterError
from arbitrage.router.store import read_config

ROOT = Path(__file__).resolve().parents[1]
RANDOM_PS = "0.25,0.5,0.75"  # escalation probabilities of the random control
RSD_THRESHOLDS = "0.7,0.8,0.9"
ORACLE_TAUS = "0"
ROUTER_RATES = "0.2,0.4,0.6"
EARLY_RATES = "0.2,0.4,0.6"  # the early policy's target rates (its installed calibration)
AUTO_QUALITIES = "1,0.5,0.3"  # auto's quality budgets: 1 the target's own text; 0.3 picks draft-only


def fast_path_runs(
    rsd: str, random: str, verify: str, early: str, qualities: str
) -> list[tuple[str, list[str]]]:
    """The fast-path sweep as ``(grid, extra flags)`` per run into one folder: target-only live (no step
    cache, so no replay charges it another point's stored cost), the step-level policies in one run, then
    the runs whose target speculates (lossless, ``auto``), each labelled apart."""
    grid = ["draft"]
    if random:
        grid.append(f"random:p={random}")
    grid += [f"rsd:threshold={rsd}", f"verify:target_rate={verify}", f"early:target_rate={early}"]
    grid.append(f"early@first:target_rate={early.split(',')[0]}")  # the target writes the opening step
    return [
        ("target", ["--no-cache"]),
        ("; ".join(grid), ["--variant", "first: target_steps=1"]),
        ("target", ["--speculate", "--label", "lossless"]),
        (f"auto:quality={qualities}", []),
    ]


def points(
    router: Path | None,
    rsd: str,
    oracle: str,
    rates: str,
    random: str = RANDOM_PS,
    verify: str = "",
    variants: Sequence[str] = (),
) -> str:
    """The sweep grid: the cheap points first, so that later ones replay their cached steps."""
    grid = ["draft"]
    if random:
        grid.append(f"random:p={random}")
    grid.append(f"rsd:threshold={rsd}")
    if verify:
        grid.append(f"verify:target_rate={verify}")
    if router is not None:
        grid.append(f"router:target_rate={rates}")
    grid += [f"router@{name}:target_rate={rates}" for name in variants]
    grid += [f"oracle:tau={oracle}", "target"]
    return "; ".join(grid)


def router_variant(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` of ``--router-variant``."""
    name, eq, path = spec.partition("=")
    if not eq or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {spec!r}")
    return name, Path(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 problems into gsm8k_sweep_quick")
    ap.add_argument("--limit", type=int, help="problems (default 100, or 20 with --quick)")
    ap.add_argument("--router", type=Path, help="a trained router folder: adds the router points")
    ap.add_argument(
        "--router-variant",
        type=router_variant,
        action="append",
        default=[],
        help="NAME=PATH: another router's points, as family router@NAME (repeatable)",
    )
    ap.add_argument("--random-ps", default=RANDOM_PS, help="random control's p values ('' for none)")
    ap.add_argument("--rsd-thresholds", default=RSD_THRESHOLDS)
    ap.add_argument("--oracle-taus", default=ORACLE_TAUS)
    ap.add_argument("--router-rates", default=ROUTER_RATES)
    ap.add_argument(
        "--verify-calibration",
        type=Path,
        help="a verify calibration table (arbitrage calibrate-verify): adds the verify points",
    )
    ap.add_argument("--verify-score", help="the verify policy's score (default: the policy's)")
    ap.add_argument("--verify-rates", default=ROUTER_RATES, help="the verify points' target rates")
    ap.add_argument(
        "--out", type=Path, help="results folder (default benchmarks/results/gsm8k_sweep[_quick])"
    )
    ap.add_argument(
        "--block",
        type=int,
        default=10,
        help="run every point on the first BLOCK problems, then the next BLOCK, ... (0: each point on all "
        "problems in turn); the report after each block compares all points on the problems done so far",
    )
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    ap.add_argument(
        "--fast-path",
        action="store_true",
        help="the fast path's sweep (lossless speculation, auto, early) into gsm8k_sweep_v3",
    )
    ap.add_argument(
        "--llama-server",
        type=Path,
        help="--fast-path: the llama-server binary of the server row (default: on PATH, else built)",
    )
    ap.add_argument("--early-rates", default=EARLY_RATES, help="--fast-path: the early points' target rates")
    ap.add_argument("--auto-qualities", default=AUTO_QUALITIES, help="--fast-path: auto's quality budgets")
    args = ap.parse_args()
    limit = args.limit or (20 if args.quick else 100)
    if args.fast_path:
        out = args.out or ROOT / "benchmarks" / "results" / "gsm8k_sweep_v3"
        runs = fast_path_runs(
            args.rsd_thresholds, args.random_ps, args.verify_rates, args.early_rates, args.auto_qualities
        )
        server = ["--llama-server", str(args.llama_server)] if args.llama_server else []

        def server_row(upto: int) -> list[list[str]]:
            row = ROOT / "benchmarks" / "sweep_server_row.py"
            return [[sys.executable, str(row), str(out), "--limit", str(upto), *server]]

        run_blocks("gsm8k", limit, runs, out, args.block, "GSM8K test", args.dry_run, server_row)
        return
    out = args.out or ROOT / "benchmarks" / "results" / ("gsm8k_sweep_quick" if args.quick else "gsm8k_sweep")
    for path in [args.router, *(path for _, path in args.router_variant)]:
        if path is not None:
            try:
                read_config(path)
            except RouterError as exc:
                sys.exit(f"error: {exc}")
    verify = args.verify_rates if args.verify_calibration is not None else ""
    names = [name for name, _ in args.router_variant]
    grid = points(
        args.router, args.rsd_thresholds, args.oracle_taus, args.router_rates, args.random_ps, verify, names
    )
    extra = ["--router", str(args.router)] if args.router is not None else []
    for name, path in args.router_variant:
        extra += ["--variant", f"{name}: path={path}"]
    if verify:
        extra += ["--calibration", str(args.verify_calibration)]
        if args.verify_score:
            extra += ["--score", args.verify_score]
    run_blocks("gsm8k", limit, [(grid, extra)], out, args.block, "GSM8K test", args.dry_run)


def run_blocks(
    dataset: str,
    limit: int,
    runs: Sequence[tuple[str, list[str]]],
    out: Path,
    block: int,
    name: str,
    dry_run: bool,
    after: Callable[[int], list[list[str]]] | None = None,
) -> None:
    """``arbitrage sweep`` of each ``(grid, extra flags)`` in ``runs`` on the first ``block`` problems, then
    the first 2×``block``, ... up to ``limit``, each block followed by the commands ``after(upto)`` gives
    and ``arbitrage report``; prints the last report (exits on a failure)."""
    cli = [sys.executable, "-m", "arbitrage.cli.main"]
    uptos = [*range(block, limit, block), limit] if block > 0 else [limit]
    for upto in uptos:
        sweeps = [
            [*cli, "sweep", "--dataset", dataset, "--limit", str(upto), "--points", grid, "--diagnose",
             "--out", str(out), *extra]
            for grid, extra in runs
        ]  # fmt: skip
        report = [*cli, "report", str(out), "--title", f"{name}, first {upto} problems, default local models"]
        more = after(upto) if after is not None else []
        for cmd in (*sweeps, *more, report):
            print("$", shlex.join(cmd[2:] if cmd[1] == "-m" else cmd[1:]), flush=True)
            if not dry_run:
                result = subprocess.run(cmd, check=False)
                if result.returncode != 0:
                    sys.exit(result.returncode)
    if not dry_run:
        print((out / "report.md").read_text())


if __name__ == "__main__":
    main()
