"""Run a policy over problems: one JSON line per problem, resumable, graded in the main thread.

The output folder holds ``run.json`` (the run's configuration), ``records.jsonl`` (one
:class:`~arbitrage.evaluation.records.ProblemRecord` per problem, appended and flushed as each finishes)
and ``summary.json``. Re-running the same command skips the problems already recorded (an errored
problem, whose solve raised, e.g. on an unreachable server, runs again); a different configuration in
the same folder is refused.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from arbitrage.concurrent import ProblemResult, solve_many
from arbitrage.engine import Engine
from arbitrage.errors import ConfigError
from arbitrage.evaluation.datasets import Problem
from arbitrage.evaluation.records import RECORDS, ProblemRecord, read_records, write_records
from arbitrage.evaluation.summary import EvalSummary, summarize
from arbitrage.grading import grade
from arbitrage.trace import SolveTrace

logger = logging.getLogger(__name__)

__all__ = ["RECORDS", "ProblemRecord", "prepare_output", "record_for", "run_eval"]


def record_for(problem: Problem, trace: SolveTrace | None, error: str | None = None) -> ProblemRecord:
    """The record of one problem: graded and measured, or errored (``trace`` None, ``error`` set)."""
    if trace is None:
        return ProblemRecord(id=problem.id, dataset=problem.dataset, gold=problem.answer,
                             error=error or "unknown error")  # fmt: skip
    verdict = grade(trace.solution, problem.answer)
    draft, target = trace.usage["draft"], trace.usage["target"]
    probes = [s.probe.output for s in trace.steps if s.probe is not None and s.probe.output is not s.draft]
    outputs = [o for s in trace.steps for o in (s.draft, s.target) if o is not None] + probes
    replayed = sum(1 for o in outputs if o.extra.get("replayed"))
    prm_calls = sum(int(s.decision.info.get("prm_calls", 0)) for s in trace.steps)
    prm_replayed = sum(int(s.decision.info.get("prm_replayed", 0)) for s in trace.steps)
    return ProblemRecord(
        id=problem.id,
        dataset=problem.dataset,
        gold=problem.answer,
        error=error,
        predicted=verdict.predicted,
        correct=verdict.correct,
        grade_error=verdict.error,
        policy=trace.policy,
        stop_reason=trace.stop_reason,
        steps=len(trace.steps),
        draft_steps=sum(1 for s in trace.steps if s.role == "draft"),
        solution_tokens=sum(s.tokens for s in trace.steps),
        draft_kept_tokens=sum(s.tokens for s in trace.steps if s.role == "draft"),
        escalations=sum(1 for s in trace.steps if s.escalated),
        wasted_escalations=trace.wasted_escalations,
        rewarded_escalations=trace.escalations_with_rewards,
        target_calls=target.calls,
        draft_generated_tokens=draft.generated_tokens,
        target_generated_tokens=target.generated_tokens,
        draft_seconds=draft.seconds,
        target_seconds=target.seconds,
        draft_prefill_tokens=draft.prefill_tokens,
        target_prefill_tokens=target.prefill_tokens,
        policy_seconds=trace.policy_seconds,
        wall_seconds=trace.wall_seconds,
        # the target's seconds include its verifications (ModelUsage.seconds)
        latency_seconds=draft.seconds + target.seconds + trace.policy_seconds,
        replayed_calls=replayed,
        live_calls=len(outputs) - replayed,
        replayed_prm_calls=prm_replayed,
        live_prm_calls=prm_calls - prm_replayed,
        kept_tokens=target.kept_tokens,
        verify_calls=target.verify_calls,
        verify_seconds=target.verify_seconds,
        verify_prefill_tokens=target.verify_prefill_tokens,
        spec_proposed=target.spec_proposed,
        spec_accepted=target.spec_accepted,
        probes=sum(1 for s in trace.steps if s.probe is not None),
        early_escalations=sum(1 for s in trace.steps if s.escalated and s.decision.point != "step"),
        route="".join("T" if s.role == "target" else "D" for s in trace.steps),
        solution=trace.solution,
    )


def prepare_output(out: Path, config: dict[str, Any]) -> list[ProblemRecord]:
    """Create or reopen an output folder; return the records already there."""
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / "run.json"
    if run_file.is_file():
        previous = json.loads(run_file.read_text())
        if previous != config:
            changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            raise ConfigError(
                f"{out} holds a run with a different configuration ({', '.join(changed)}); "
                "use another --out folder or delete it"
            )
    else:
        run_file.write_text(json.dumps(config, indent=2, sort_keys=True))
    loaded = read_records(out / RECORDS)
    done = [r for r in loaded if r.completed]  # errored problems (server down, a crash, ...) run again
    if len(done) < len(loaded):
        logger.info("%d problems that failed last time will run again", len(loaded) - len(done))
    # rewrite without damaged lines or failures so appends stay valid JSON lines
    write_records(out / RECORDS, done)
    return done


def run_eval(
    problems: Sequence[Problem],
    engine: Engine,
    out: Path,
    config: dict[str, Any],
    on_record: Callable[[ProblemRecord], None] | None = None,
    show_progress: bool = True,
    concurrency: int = 1,
) -> EvalSummary:
    """Solve every problem not yet recorded in ``out``; append a record per problem; summarise.

    ``concurrency`` problems are in flight at once (see :func:`arbitrage.concurrent.solve_many`); records
    are written in the order problems finish, each as soon as it does.
    """
    done = prepare_output(out, config)
    done_ids = {r.id for r in done}
    todo = [p for p in problems if p.id not in done_ids]
    wanted = {p.id for p in problems}
    from tqdm import tqdm

    bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc=str(config.get("policy", "eval")),
               disable=not show_progress, unit="problem")  # fmt: skip
    with (out / RECORDS).open("a") as fh:

        def write(result: ProblemResult) -> None:  # on this (main) thread: grading's time limits work
            problem = todo[result.index]
            if result.trace is None:
                logger.error("problem %s failed: %s", problem.id, result.error)
            record = record_for(problem, result.trace, error=result.error)
            fh.write(json.dumps(record.to_dict()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done.append(record)
            if on_record is not None:
                on_record(record)
            bar.update(1)
            finished = [r for r in done if r.id in wanted and r.completed]
            errored = sum(1 for r in done if r.id in wanted and not r.completed)
            bar.set_postfix(acc=f"{sum(1 for r in finished if r.correct)}/{len(finished)}",
                            errored=errored)  # fmt: skip

        solve_many(engine, [p.question for p in todo], concurrency=concurrency, on_result=write)
    bar.close()
    selected = [r for r in done if r.id in wanted]
    summary = summarize(selected, str(config.get("policy", "")))
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary
