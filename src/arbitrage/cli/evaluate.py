"""``arbitrage eval``: run a policy over a benchmark, resumably, and summarise accuracy and cost."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from arbitrage.cli import options as opt
from arbitrage.evaluation.datasets import Problem
from arbitrage.prm.registry import DEFAULT_PRM


def load_problems(
    dataset: str | None,
    data_file: Path | None,
    question_field: str | None,
    answer_field: str | None,
    data_dir: Path | None,
    offset: int,
    limit: int | None,
) -> tuple[str, list[Problem]]:
    """The selected problems and a name for them; malformed lines are reported on stderr."""
    from arbitrage.errors import ConfigError
    from arbitrage.evaluation.datasets import load_dataset, load_file, select

    if (dataset is None) == (data_file is None):
        raise ConfigError("Give exactly one of --dataset NAME or --data-file PATH")
    if data_file is not None:
        report = load_file(data_file, question_field, answer_field)
        name = data_file.stem
    else:
        assert dataset is not None
        report = load_dataset(dataset, data_dir)
        name = dataset
    for entry in report.skipped:
        typer.echo(f"warning: skipped malformed line {entry}", err=True)
    problems = select(report.problems, offset, limit)
    if not problems:
        raise ConfigError(f"No problems selected from {name} (offset {offset}, limit {limit})")
    return name, problems


def evaluate(
    dataset: opt.Dataset = None,
    data_file: opt.DataFile = None,
    question_field: opt.QuestionField = None,
    answer_field: opt.AnswerField = None,
    data_dir: opt.DataDir = None,
    limit: opt.Limit = None,
    offset: opt.Offset = 0,
    policy: opt.Policy = "draft",
    p: opt.P = 0.5,
    prm: opt.Prm = DEFAULT_PRM,
    threshold: opt.Threshold = 0.7,
    tau: opt.Tau = None,
    target_samples: opt.TargetSamples = 1,
    diagnose: opt.Diagnose = False,
    router: opt.Router = None,
    target_rate: opt.TargetRate = None,
    draft: opt.Draft = opt.DEFAULTS["draft"],
    target: opt.Target = opt.DEFAULTS["target"],
    max_steps: opt.MaxSteps = 40,
    max_tokens: opt.MaxTokens = 2048,
    max_step_tokens: opt.MaxStepTokens = 256,
    separator: opt.Separator = "\\n\\n",
    temperature: opt.Temperature = 0.0,
    seed: opt.Seed = 0,
    n_ctx: opt.NCtx = 4096,
    concurrency: opt.Concurrency = 1,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: runs/eval/<data>_<policy>_<draft>_<target>).")
    ] = None,
) -> None:
    """Evaluate a policy on a dataset: per-problem JSON lines, then accuracy, acceptance and latency."""
    from rich.console import Console

    from arbitrage.backends.loader import GeneratorOptions
    from arbitrage.cli.common import load_model, step_params
    from arbitrage.cli.render import print_eval_summary
    from arbitrage.engine import Engine, EngineConfig
    from arbitrage.evaluation.runner import run_eval
    from arbitrage.policies import build_policy

    name, problems = load_problems(dataset, data_file, question_field, answer_field, data_dir, offset, limit)
    config = EngineConfig(
        step=step_params(separator, max_step_tokens, temperature, seed),
        max_steps=max_steps,
        max_total_tokens=max_tokens,
    )
    policy_options = opt.policy_options(
        policy, p, seed, router, tau, target_rate, threshold=threshold, target_samples=target_samples,
        diagnose=diagnose, prm=prm, n_ctx=n_ctx,
    )  # fmt: skip
    scorer = policy_options.scorer
    routing = build_policy(policy, policy_options)
    run_config = {
        "data": name,
        "offset": offset,
        "policy": routing.name,
        "draft": draft,
        "target": target,
        "max_steps": max_steps,
        "max_tokens": max_tokens,
        "max_step_tokens": max_step_tokens,
        "separator": separator,
        "temperature": temperature,
        "seed": seed,
        "prm": prm if scorer is not None else None,
    }
    if out is None:
        slug = re.sub(r"[^A-Za-z0-9.=-]+", "-", f"{name}_{routing.name}_{draft}_{target}").strip("-")
        out = Path("runs") / "eval" / slug
    options = GeneratorOptions(n_ctx=n_ctx, seed=seed)
    draft_model = load_model(draft, options)
    target_model = load_model(target, options)
    try:
        engine = Engine(draft_model, target_model, routing, config)
        summary = run_eval(problems, engine, out, run_config, concurrency=concurrency)
    finally:
        draft_model.close()
        target_model.close()
        if scorer is not None:
            scorer.close()
    print_eval_summary(Console(), summary, out)
