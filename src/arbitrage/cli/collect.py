"""``arbitrage collect``: oracle-labelled step pairs for router training, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arbitrage.cli import options as opt

if TYPE_CHECKING:
    from arbitrage.labelling.collect import CollectModels


def collect(
    dataset: opt.Dataset = "gsm8k-train",
    data_file: opt.DataFile = None,
    question_field: opt.QuestionField = None,
    answer_field: opt.AnswerField = None,
    data_dir: opt.DataDir = None,
    limit: opt.Limit = None,
    offset: opt.Offset = 0,
    draft: opt.Draft = opt.DEFAULTS["draft"],
    target: opt.Target = opt.DEFAULTS["target"],
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
    max_tokens: Annotated[int, typer.Option(help="Stop once the solution holds this many tokens.")] = 2048,
    max_step_tokens: opt.MaxStepTokens = 256,
    separator: opt.Separator = "\\n\\n",
    seed: opt.Seed = 0,
    n_ctx: opt.NCtx = 4096,
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
    from arbitrage.cli.common import load_model, open_run, step_params
    from arbitrage.evaluation.datasets import load_problems
    from arbitrage.labelling.collect import CollectConfig, CollectModels, run_collection
    from arbitrage.labelling.outcome import OutcomeOptions
    from arbitrage.prm.registry import DEFAULT_PRM
    from arbitrage.run import RunSpec

    name, problems = load_problems(dataset if data_file is None else None, data_file, question_field,
                                   answer_field, data_dir, offset, limit)  # fmt: skip
    spec = prm or DEFAULT_PRM
    config = CollectConfig(
        step=step_params(separator, max_step_tokens, 0.0, seed),
        target_samples=target_samples,
        follow=follow,  # type: ignore[arg-type]
        tau=tau,
        max_steps=max_steps,
        max_total_tokens=max_tokens,
        seed=seed,
        prm_name=spec,
        labels=labels,
        outcome=OutcomeOptions(continuations=continuations, seed=seed, max_total_tokens=max_tokens),
    )
    options = GeneratorOptions(n_ctx=n_ctx, seed=seed)

    def make_models() -> CollectModels:  # one set per worker; run_collection closes them
        run = open_run(RunSpec(draft=draft, target=target, prm=spec, with_prm=True, n_ctx=n_ctx, seed=seed))
        extra = None
        if labels == "outcome" and continuation is not None and continuation != draft:
            try:
                extra = load_model(continuation, options)
            except BaseException:
                run.close()
                raise
        assert run.scorer is not None  # with_prm
        return CollectModels(run.draft, run.target, run.scorer, extra)

    stats = run_collection(problems, make_models, out, config, workers=workers)
    typer.echo(
        f"{name}: {stats.questions_done} questions collected, {stats.questions_skipped} already there, "
        f"{stats.questions_failed} failed; {stats.rows} new rows in {stats.seconds:.0f} s "
        f"({stats.rows_per_second:.3f} rows/s) -> {out}"
    )
