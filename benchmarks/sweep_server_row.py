"""llama-server (target alone) as a row of a sweep: the same problems, the same GGUF files and threads, the
project's own chat prompts, greedy, each request capped at the tokens the sweep's target-only point wrote.

    .venv/bin/python benchmarks/sweep_server_row.py benchmarks/results/gsm8k_sweep_v3 --limit 20

The sweep's first ``--limit`` problems (its dataset and offset, from the target point's ``run.json``) are
sent to ``llama-server -m TARGET`` (``benchmarks/vs_llama_server.py``'s server configuration: the binary on
PATH, ``--llama-server PATH``, or built from the vendored llama.cpp source; resumable, one JSON line per
problem in ``SWEEP/llama_server/server.jsonl``). The summary compares the server with the sweep's points
(``--points``, default target-only, target@lossless, every auto point and draft-only) on the problems
both have: mean seconds, correct, each point's speed relative to the server and to target-only with a
paired bootstrap 95% interval, and how many texts start with target-only's. Writes
``SWEEP/llama_server/summary.{md,json}`` and ``latency.png``.

A sweep point's seconds are its cost latency (the sum of its model calls' measured seconds, a replayed
call charged what it cost live; ``arbitrage report``), the server's the wall clock of one request.
Run it with the machine otherwise idle, after the sweep's block (never beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vs_llama_server import find_llama_server, run_all, summarise, write_summary

from arbitrage.evaluation.datasets import load_problems
from arbitrage.evaluation.records import RECORDS, read_records

DEFAULT_POINTS = "target,target@lossless,auto*,draft"


def point_rows(sweep: Path, patterns: list[str]) -> dict[str, Path]:
    """The sweep's point folders matching ``patterns`` (``auto*``: every point starting with ``auto``), in
    the patterns' order; a pattern no folder matches is skipped."""
    folders = sorted(p.name for p in sweep.iterdir() if (p / RECORDS).is_file())
    chosen: dict[str, Path] = {}
    for pattern in patterns:
        names = [f for f in folders if f.startswith(pattern[:-1])] if pattern.endswith("*") else [pattern]
        for name in names:
            if name in folders:
                chosen[name] = sweep / name / RECORDS
    return chosen


def write_point(path: Path, records: Path) -> None:
    """A sweep point's completed records as ``vs_llama_server`` rows (seconds: cost latency)."""
    rows = [
        {"id": r.id, "seconds": r.latency_seconds, "tokens": r.target_generated_tokens + r.draft_generated_tokens,
         "target_tokens": r.target_generated_tokens, "correct": r.correct, "predicted": r.predicted,
         "text": r.solution, "wall_seconds": r.wall_seconds, "replayed_calls": r.replayed_calls}
        for r in read_records(records) if r.completed
    ]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path, help="a sweep folder with a target point")
    ap.add_argument("--limit", type=int, default=None, help="the sweep's first LIMIT problems (default: all)")
    ap.add_argument("--points", default=DEFAULT_POINTS, help="sweep points to compare (comma-separated)")
    ap.add_argument("--llama-server", dest="binary", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--summarise-only", action="store_true", help="run nothing: summarise the rows there")
    args = ap.parse_args()
    target_dir = args.sweep / "target"
    if not (target_dir / "run.json").is_file():
        sys.exit(f"error: {target_dir} holds no sweep point (run the sweep's target point first)")
    config: dict[str, Any] = json.loads((target_dir / "run.json").read_text())
    name, problems = load_problems(
        config["data"], None, offset=int(config.get("offset", 0)), limit=args.limit
    )
    done = {r.id for r in read_records(target_dir / RECORDS) if r.completed}
    problems = [p for p in problems if p.id in done]
    if not problems:
        sys.exit(
            f"error: the target point in {args.sweep} has no completed problem among the first {args.limit}"
        )
    out = args.sweep / "llama_server"
    out.mkdir(exist_ok=True)
    points = point_rows(args.sweep, [p.strip() for p in args.points.split(",") if p.strip()])
    for point, records in points.items():
        write_point(out / f"{point}.jsonl", records)  # target.jsonl caps the server's tokens
    if not args.summarise_only:
        os.environ.setdefault("ARBITRAGE_THREADS", str(args.threads))
        args.binary = find_llama_server(args.binary)
        args.draft, args.target, args.schedule = config["draft"], config["target"], "blocked"
        from arbitrage.backends.loader import GeneratorOptions, load_generator

        target = load_generator(args.target, GeneratorOptions())
        prompts = {p.id: target.render_prompt(p.question) for p in problems}  # type: ignore[attr-defined]
        target.close()
        run_all(["server"], problems, prompts, out, args)
    configs = ["server", *points]
    title = f"llama-server as a row of the sweep: {name}"
    print(write_summary(out, summarise(out, problems, configs), title))


if __name__ == "__main__":
    main()
