"""The MATH500 check: one policy against draft, target, RSD and random mixing on the first MATH500 problems.

The standard sweep (``benchmarks/gsm8k_sweep.py``) picks the best policy on GSM8K; this checks that the
choice carries over to harder problems, on the same problems for every point, with the same report
(errored problems apart, paired intervals, speedups at matched accuracy, lift over random mixing at the
policy's acceptance). The random control escalates each step with probability ``--random`` (default
0.6, near the escalation share of a policy at target rate 0.6; give the policy's own rate otherwise).
Blocks of problems and resumable, like the sweep: rerun the same command after a stop.

    python benchmarks/math500_check.py --policy "verify:target_rate=0.4" --verify-score target_nll
    python benchmarks/math500_check.py --policy "router:target_rate=0.4" --router runs/routers/both

Writes ``benchmarks/results/math500_check`` (records per point, ``report.md``, ``report.json``, plots)
and prints the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gsm8k_sweep import RSD_THRESHOLDS, run_blocks

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", required=True, help='the policy point, e.g. "verify:target_rate=0.4"')
    ap.add_argument("--rsd-thresholds", default=RSD_THRESHOLDS, help="RSD's thresholds ('' for none)")
    ap.add_argument("--random", default="0.6", help="random control p ('' for none)")
    ap.add_argument("--limit", type=int, default=100, help="the first N MATH500 problems")
    ap.add_argument("--block", type=int, default=10, help="problems per block (0: each point on all)")
    ap.add_argument("--router", type=Path, help="the router folder, for a router policy")
    ap.add_argument("--verify-score", help="the verify policy's score")
    ap.add_argument("--verify-calibration", type=Path, help="the verify policy's calibration table")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "math500_check")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args()
    if ":" not in args.policy and args.policy not in ("draft", "target"):
        sys.exit(
            f"error: --policy {args.policy!r} is not a point (NAME:OPTION=VALUE, e.g. verify:target_rate=0.4)"
        )
    grid = ["draft"]
    if args.random:
        grid.append(f"random:p={args.random}")
    if args.rsd_thresholds:
        grid.append(f"rsd:threshold={args.rsd_thresholds}")
    grid += [args.policy, "target"]
    extra: list[str] = []
    if args.router is not None:
        extra += ["--router", str(args.router)]
    if args.verify_score:
        extra += ["--score", args.verify_score]
    if args.verify_calibration is not None:
        extra += ["--calibration", str(args.verify_calibration)]
    run_blocks(
        "math500", args.limit, [("; ".join(grid), extra)], args.out, args.block, "MATH500", args.dry_run
    )


if __name__ == "__main__":
    main()
