"""``arbitrage eval-prm``: AUROC, mean rewards and speed of step scorers on a step-labelled set."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_DATA_DIR = Path("data") / "prm_eval"


def eval_prm(
    prm: Annotated[
        list[str] | None,
        typer.Option(
            "--prm",
            help="Scorer spec (repeat for several): judge:MODEL[#PROMPT], arith, "
            "judge+arith:MODEL[#PROMPT], hf:PATH[#FORMAT], http:URL#MODEL, mc:MODEL.",
        ),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Step-labelled JSONL file(s); default: data/prm_eval/*.jsonl here."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Score only the first N rows of each file.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the results (and per-row rewards) as JSON.")] = None,
    resume: Annotated[bool, typer.Option(help="Keep scorers already in --out; run only the others.")] = False,
    n_ctx: Annotated[int, typer.Option(help="Context window of local judge models.")] = 4096,
    rollouts: Annotated[int, typer.Option(help="mc: completions per step.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead.")] = False,
) -> None:
    """Measure how well each PRM ranks right steps above wrong ones, and what a call costs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from arbitrage.errors import ConfigError
    from arbitrage.evaluation.render import print_prm_table
    from arbitrage.labelling.rollout import load_scorer  # the PRM registry's scorers, and mc
    from arbitrage.prm.evalset import load_rows
    from arbitrage.prm.evaluate import evaluate_scorers, results_file
    from arbitrage.prm.registry import DEFAULT_PRM, ScorerOptions

    files = data or sorted(DEFAULT_DATA_DIR.glob("*.jsonl"))
    if not files:
        raise ConfigError(f"No step-labelled data: pass --data FILE.jsonl (none found in {DEFAULT_DATA_DIR})")
    if limit is not None and limit <= 0:
        raise ConfigError(f"--limit must be positive, got {limit}")
    if resume and out is None:
        raise ConfigError("--resume needs --out")
    rows = [row for path in files for row in load_rows(path)[:limit]]
    gold = {row.question: row.gold_answer for row in rows}
    options = ScorerOptions(n_ctx=n_ctx, gold_answers=gold, rollouts=rollouts)
    console = Console(stderr=True)
    previous = {}
    if resume and out is not None and out.is_file():
        previous = {s["spec"]: s for s in json.loads(out.read_text())["scorers"]}

    @contextmanager
    def progress(spec: str) -> Iterator[Callable[[int, int], None]]:
        with Progress(
            TextColumn(f"[bold]{spec}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task(spec, total=len(rows))
            yield lambda done, _total: bar.update(task, completed=done)

    def save(results: list[dict[str, Any]]) -> None:
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results_file(files, rows, results), indent=1) + "\n")

    results = evaluate_scorers(prm or [DEFAULT_PRM], rows, lambda spec: load_scorer(spec, options),
                               previous=previous, progress=progress, measured=save)  # fmt: skip
    save(results)
    if as_json:
        typer.echo(json.dumps(results, indent=1))
    else:
        print_prm_table(Console(width=None if sys.stdout.isatty() else 160), results, len(rows))
