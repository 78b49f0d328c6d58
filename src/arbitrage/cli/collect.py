"""``arbitrage collect``: oracle-labelled step pairs for router training, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arbitrage.cli import options as opt

if TYPE_CHECKING:
    from arbitrage.labelling.collect import CollectModels


@opt.command
def collect(
    problems: opt.Problems = opt.flags(opt.Problems, dataset="gsm8k-train"),
    # collection labels steps: reproducible evaluation by default (a step a function of its text)
    models: opt.Models = opt.flags(opt.Models, omit=("speculate",), reproducible=True),
    prm: Annotated[
        str | None, typer.Option(help="Step scorer spec (default: the measured best local PRM).")
    ] = None,
    target_samples: Annotated[
        int, typer.Option(help="k target samples per prefix; s_t is their mean reward.")
    ] = 1,
    follow: Annotated[
        str, typer.Option(help="Which step extends the prefix: oracle, draft, target, random.")
    ] = "oracle",
    tau: Annotated[float, typer.Option(help="oracle follow rule: take the target's step when Δ > τ.")] = 0.0,
    max_steps: Annotated[int, typer.Option(help="Steps per question.")] = 12,
    steps: opt.Steps = opt.flags(opt.Steps, omit=("max_steps", "temperature")),  # greedy
    labels: Annotated[
        str,
        typer.Option(
            help="outcome (default): the PRM's Δ and grounded labels: continue from prefix + z_d and from "
            "prefix + z_t to an answer and grade both against the gold answer. prm: the PRM's Δ only "
            "(faster)."
        ),
    ] = "outcome",
    continuation: Annotated[
        str | None,
        typer.Option(help="--labels outcome: the model that continues both candidates (default: the draft)."),
    ] = None,
    continuations: Annotated[
        int,
        typer.Option(
            help="--labels outcome: continuations per candidate (1: greedy; more: sampled, averaged)."
        ),
    ] = 1,
    workers: Annotated[
        int, typer.Option(help="Questions in flight at once (each worker loads its own models).")
    ] = 1,
    out: Annotated[Path, typer.Option(help="Folder of Parquet shards (appended; reruns resume).")] = Path(
        "runs/collect/gsm8k-train"
    ),
) -> None:
    """Collect (x, z_d, z_t, s_d, s_t, Δ, y) step pairs: both models write each step from one prefix.

    Each row also holds the target's verification of z_d (when the target backend can verify), and with
    --labels outcome the grounded labels (outcome_d, outcome_t, outcome_advantage, y_outcome).
    """
    from arbitrage.backends.loader import GeneratorOptions
    from arbitrage.cli.common import load_model, open_run
    from arbitrage.labelling.collect import CollectConfig, CollectModels, run_collection
    from arbitrage.labelling.outcome import OutcomeOptions
    from arbitrage.prm.registry import DEFAULT_PRM
    from arbitrage.run import RunSpec

    name, loaded = problems.load(file_wins=True)
    spec = prm or DEFAULT_PRM
    seed = steps.seed
    config = CollectConfig(
        step=steps.step(),
        target_samples=target_samples,
        follow=follow,  # type: ignore[arg-type]
        tau=tau,
        max_steps=max_steps,
        max_total_tokens=steps.max_tokens,
        seed=seed,
        prm_name=spec,
        labels=labels,
        outcome=OutcomeOptions(continuations=continuations, seed=seed, max_total_tokens=steps.max_tokens),
    )
    options = GeneratorOptions(n_ctx=steps.n_ctx, seed=seed)

    def make_models() -> CollectModels:  # one set per worker; run_collection closes them
        run = open_run(RunSpec(**models.spec(), prm=spec, with_prm=True,
                               n_ctx=steps.n_ctx, seed=seed))  # fmt: skip
        extra = None
        if labels == "outcome" and continuation is not None and continuation != models.draft:
            try:
                extra = load_model(continuation, options)
            except BaseException:
                run.close()
                raise
        assert run.scorer is not None  # with_prm
        return CollectModels(run.draft, run.target, run.scorer, extra)

    stats = run_collection(loaded, make_models, out, config, workers=workers)
    typer.echo(
        f"{name}: {stats.questions_done} questions collected, {stats.questions_skipped} already there, "
        f"{stats.questions_failed} failed; {stats.rows} new rows in {stats.seconds:.0f} s "
        f"({stats.rows_per_second:.3f} rows/s) -> {out}"
    )
