"""Replayed against live: a mixed policy run live on N GSM8K test problems, then again with every model
step replayed from the step cache the live run filled; the latency each run reports must agree.

Both passes are ``arbitrage sweep`` runs of one RSD point (default PRM, threshold 0.7: about a third of
the steps escalated) with the default models, sharing one step cache: the first fills it (every call
live), the second, with freshly loaded models, replays every draft and target step (PRM scores are live
in both: a judge's cost is its prefill, see ``--replay-scores``). A replayed llama.cpp step prefills its
context for real from the model's current KV cache and is charged that plus its stored decode seconds,
so the goal is: mean latency within 3%, prefill token counts equal problem by problem, the same text.
Before the fix a replay charged the prefill of its first run and left the KV cache behind: on problems
0-19 target-only, 29.4 s live vs 33.1 s replayed (+12%), 107 vs 554 prefill tokens per problem.

Resumable (each pass is a resumable sweep). Writes ``OUT/replay_latency.json`` and
``OUT/replay_latency.png`` and prints a summary::

    python benchmarks/replay_latency.py                   # 20 problems
    python benchmarks/replay_latency.py --limit 5 --out /tmp/replay
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "replay_latency"
POINT = "rsd:threshold=0.7"
SLUG = "rsd_threshold=0.7"


def sweep(out: Path, cache: Path, limit: int) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "arbitrage.cli.main", "sweep", "--dataset", "gsm8k", "--limit", str(limit),
           "--points", POINT, "--cache", str(cache), "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True)
    lines = (out / SLUG / "records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def bootstrap_ratio(live: np.ndarray, replayed: np.ndarray, resamples: int = 10_000) -> tuple[float, float]:
    """Paired 95% percentile interval of mean(replayed) / mean(live) over problems."""
    rng = np.random.default_rng(0)
    index = rng.integers(0, len(live), size=(resamples, len(live)))
    ratios = replayed[index].mean(axis=1) / live[index].mean(axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def compare(live: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> dict[str, Any]:
    by_id = {r["id"]: r for r in replayed}
    pairs = [
        (a, by_id[a["id"]])
        for a in live
        if a["id"] in by_id and not a.get("error") and not by_id[a["id"]].get("error")
    ]
    lat_live = np.array([a["latency_seconds"] for a, _ in pairs])
    lat_rep = np.array([b["latency_seconds"] for _, b in pairs])

    def prefill(r: dict[str, Any]) -> int:
        return int(r.get("draft_prefill_tokens", 0)) + int(r.get("target_prefill_tokens", 0))

    low, high = bootstrap_ratio(lat_live, lat_rep)
    return {
        "point": POINT,
        "problems": len(pairs),
        "errored": sorted({r["id"] for r in live + replayed if r.get("error")}),
        "mean_latency_live_s": float(lat_live.mean()),
        "mean_latency_replayed_s": float(lat_rep.mean()),
        "ratio_replayed_to_live": float(lat_rep.mean() / lat_live.mean()),
        "ratio_interval_95": [low, high],
        "mean_prefill_tokens_live": float(np.mean([prefill(a) for a, _ in pairs])),
        "mean_prefill_tokens_replayed": float(np.mean([prefill(b) for _, b in pairs])),
        "prefill_mismatches": sorted(a["id"] for a, b in pairs if prefill(a) != prefill(b)),
        "text_mismatches": sorted(a["id"] for a, b in pairs if a["solution"] != b["solution"]),
        "replayed_calls": int(sum(b.get("replayed_calls", 0) for _, b in pairs)),
        "live_calls_in_replay": int(sum(b.get("live_calls", 0) for _, b in pairs)),
        "wall_seconds_live": float(sum(a.get("wall_seconds", 0.0) for a, _ in pairs)),
        "wall_seconds_replayed": float(sum(b.get("wall_seconds", 0.0) for _, b in pairs)),
        "per_problem": [{"id": a["id"], "latency_live": a["latency_seconds"], "latency_replayed": b["latency_seconds"],
                         "prefill_live": prefill(a), "prefill_replayed": prefill(b)} for a, b in pairs],
    }  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["per_problem"]
    live = [r["latency_live"] for r in rows]
    rep = [r["latency_replayed"] for r in rows]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(live, rep, s=14)
    top = max(live + rep + [1.0]) * 1.05
    ax.plot([0, top], [0, top], color="grey", lw=1, ls="--")
    ax.set_xlabel("live latency per problem (s)")
    ax.set_ylabel("replayed latency per problem (s)")
    ax.set_title(f"{result['point']}: replayed/live {result['ratio_replayed_to_live']:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "step_cache.sqlite"  # not committed (see .gitignore); delete it to start over
    live = sweep(args.out / "live", cache, args.limit)
    replayed = sweep(args.out / "replayed", cache, args.limit)
    result = compare(live, replayed)
    (args.out / "replay_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "replay_latency.png")
    low, high = result["ratio_interval_95"]
    print(f"{result['point']} on {result['problems']} problems (errored: {result['errored'] or 'none'})")
    print(f"mean latency live {result['mean_latency_live_s']:.2f} s, replayed {result['mean_latency_replayed_s']:.2f} s: "
          f"ratio {result['ratio_replayed_to_live']:.3f} [{low:.3f}, {high:.3f}]")  # fmt: skip
    print(f"prefill tokens per problem live {result['mean_prefill_tokens_live']:.1f}, replayed "
          f"{result['mean_prefill_tokens_replayed']:.1f}; problems with unequal prefill: "
          f"{len(result['prefill_mismatches'])}; text mismatches: {len(result['text_mismatches'])}")  # fmt: skip
    print(
        f"replayed model calls {result['replayed_calls']}, live ones in the replay {result['live_calls_in_replay']}"
    )


if __name__ == "__main__":
    main()
