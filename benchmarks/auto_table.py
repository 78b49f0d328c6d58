"""Build the table the ``auto`` policy plans from: measured points of a sweep, each with its accuracy
relative to target-only on the same problems (paired bootstrap 95% interval) and its mean work per
problem (decoded / evaluated tokens and calls per model), plus the cost model fitted from all records.

    .venv/bin/python benchmarks/auto_table.py benchmarks/results/gsm8k_sweep_v2 \
        --out src/arbitrage/data/auto_points.json

Only policies that run without a PRM and with the installed parts are kept (draft, target, verify,
early with its installed calibration, router@both: the installed router; a variant's fixed options are
not in sweep.json, so other variants such as ``early@first`` are left out). Prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from arbitrage.evaluation.costs import ROLES, fit_costs, role_features
from arbitrage.evaluation.records import RECORDS, read_records

KEEP = {"draft": None, "target": None, "verify": "verify", "early": "early", "router@both": "router"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    rows = json.loads((args.sweep / "sweep.json").read_text())
    records = {row["point"]: read_records(args.sweep / row["point"] / RECORDS) for row in rows}
    costs = fit_costs([r for recs in records.values() for r in recs])
    target = {r.id: r for r in records["target"] if r.completed}
    rng = np.random.default_rng(0)
    points = []
    for row in rows:
        family = row["policy_name"] + (f"@{row['variant']}" if row["variant"] else "")
        if family not in KEEP:
            continue
        mine = {r.id: r for r in records[row["point"]] if r.completed}
        ids = sorted(set(mine) & set(target))
        a = np.array([mine[i].correct for i in ids], dtype=float)
        b = np.array([target[i].correct for i in ids], dtype=float)
        picks = rng.integers(0, len(ids), size=(args.resamples, len(ids)))
        ratios = a[picks].mean(axis=1) / np.maximum(b[picks].mean(axis=1), 1e-9)
        options = {row["param"]: row["value"]} if row["param"] else {}
        work = {
            role: [float(np.mean([role_features(mine[i], role)[j] for i in ids])) for j in range(5)]
            for role in ROLES
        }
        points.append(
            {
                "point": row["point"],
                "policy": row["policy_name"],
                "options": options,
                "problems": len(ids),
                "accuracy": float(a.mean()),
                "target_accuracy": float(b.mean()),
                "relative_accuracy": float(a.mean() / b.mean()),
                "relative_accuracy_ci": [
                    float(np.percentile(ratios, 2.5)),
                    float(np.percentile(ratios, 97.5)),
                ],
                "policy_seconds": float(np.mean([mine[i].policy_seconds for i in ids])),
                "work": work,  # role -> [decoded, evaluated, calls, verified tokens, verifications] per problem
            }
        )
    table = {
        "source": str(args.sweep),
        "dataset": "gsm8k test",
        "costs": costs.to_dict(),
        "points": points,
    }
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(
        f"costs fitted from {costs.problems} records: draft {costs.draft}, target {costs.target}, R² {costs.r2_by_role}"
    )
    for p in points:
        lo, hi = p["relative_accuracy_ci"]
        print(
            f"{p['point']:>28}  accuracy {p['accuracy']:.2f}  relative {p['relative_accuracy']:.2f} [{lo:.2f}, {hi:.2f}]"
        )
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
