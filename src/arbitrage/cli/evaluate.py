"""``arbitrage eval``: run a policy over a benchmark, resumably, and summarise accuracy and cost."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from arbitrage.cli import options as opt
from arbitrage.prm.registry import DEFAULT_PRM


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
    threshold: opt.Threshold = None,
    tau: opt.Tau = None,
    target_samples: opt.TargetSamples = 1,
    diagnose: opt.Diagnose = False,
    router: opt.Router = None,
    target_rate: opt.TargetRate = None,
    score: opt.Score = None,
    calibration: opt.Calibration = None,
    keep_prefix: opt.KeepPrefix = "verified",
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

    from arbitrage.cli.common import open_run, step_params
    from arbitrage.cli.render import print_eval_summary
    from arbitrage.engine import EngineConfig
    from arbitrage.evaluation.datasets import load_problems
    from arbitrage.evaluation.runner import run_eval
    from arbitrage.run import RunSpec

    name, problems = load_problems(dataset, data_file, question_field, answer_field, data_dir, offset, limit)
    config = EngineConfig(
        step=step_params(separator, max_step_tokens, temperature, seed),
        max_steps=max_steps,
        max_total_tokens=max_tokens,
        keep_prefix=keep_prefix,  # type: ignore[arg-type]  # checked by EngineConfig
    )
    choice = opt.policy_choice(
        policy, p=p, seed=seed, path=router, tau=tau, target_rate=target_rate, threshold=threshold,
        target_samples=target_samples, diagnose=diagnose, score=score, calibration=calibration,
    )  # fmt: skip
    spec = RunSpec(draft=draft, target=target, policies=[choice], prm=prm, n_ctx=n_ctx, seed=seed)
    with open_run(spec) as run:
        run_config = {
            "data": name, "offset": offset, "policy": run.policy.name, "draft": draft, "target": target,
            "max_steps": max_steps, "max_tokens": max_tokens, "max_step_tokens": max_step_tokens,
            "separator": separator, "temperature": temperature, "seed": seed,
            "prm": prm if run.scorer is not None else None,
        }  # fmt: skip
        if keep_prefix != "verified":  # the default stays out, so earlier runs' folders still resume
            run_config["keep_prefix"] = keep_prefix
        if out is None:
            slug = re.sub(r"[^A-Za-z0-9.=-]+", "-", f"{name}_{run.policy.name}_{draft}_{target}").strip("-")
            out = Path("runs") / "eval" / slug
        summary = run_eval(problems, run.engine(config=config), out, run_config, concurrency=concurrency)
    print_eval_summary(Console(), summary, out)
