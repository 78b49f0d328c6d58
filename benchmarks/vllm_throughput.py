"""Problems per minute by concurrency, with draft and target on vLLM, against llama.cpp in process.

The same first P GSM8K test problems (greedy, the project's prompts and step rules, a per-problem token
cap) are solved at each concurrency level N by each configuration:

- ``vllm/auto`` (the default policy; through an HTTP server it is target-only decoding, since token-level
  speculation needs both models in process) and ``vllm/verify`` (verify at its default target rate
  0.6, the lossy default before ``auto``):
  draft ``openai:DRAFT_URL#DRAFT`` and target ``openai:TARGET_URL#TARGET`` (default: the default pair,
  qwen2.5-coder-0.5b and -1.5b), one vLLM server each (``bash scripts/vllm.sh start``), with per-problem concurrency (each problem at
  its own pace; the default of ``eval``/``sweep``) and, for N > 1, the step-synchronous schedule of the
  official code (``--schedule lockstep``: waves of N problems advancing one step at a time together);
- ``llamacpp/auto``: both models in process through llama.cpp (one KV cache per model, so concurrent
  problems take turns), the embedded default, as the comparison a user makes.

Per (configuration, schedule, N): problems/min (problems over first start to last end), per-problem
latency percentiles, generated tokens/s, correct count, and how many answers are identical to N = 1 of
the same configuration (greedy decoding: a batching engine's numbers may change with batch shape).
Every finished point is written to ``OUT/results.json`` at once; a rerun skips them (resumable).
Writes ``OUT/throughput.png`` and prints a summary table.

    bash scripts/vllm.sh setup && bash scripts/vllm.sh start
    python benchmarks/vllm_throughput.py --problems 16 --levels 1 2 4 8

On a 2-core machine the 1.5B in bf16 decodes at about 1 token/s through vLLM, so the committed run uses
a smaller pair, both servers started by the script:

    bash scripts/vllm.sh start smollm2-135m:8101 qwen2.5-coder-0.5b:8102
    python benchmarks/vllm_throughput.py --draft smollm2-135m --target qwen2.5-coder-0.5b \
        --problems 8 --max-tokens 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from arbitrage.backends.base import StepParams
from arbitrage.concurrent import ProblemResult, Schedule, solve_many, summarise
from arbitrage.engine import EngineConfig
from arbitrage.evaluation.datasets import load_dataset
from arbitrage.grading import grade
from arbitrage.run import Run, RunSpec

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def point_stats(results: list[ProblemResult], golds: list[str]) -> dict[str, Any]:
    summary = summarise(results)
    ok = [r for r in results if r.trace is not None]
    traces = [r.trace for r in results if r.trace is not None]
    latencies = [r.seconds for r in ok]
    tokens = sum(u.generated_tokens for t in traces for u in t.usage.values())
    correct = [
        bool(r.trace and grade(r.trace.solution, gold).correct)
        for r, gold in zip(results, golds, strict=True)
    ]
    return {
        "problems": summary.problems,
        "errored": summary.failed,
        "errors": sorted({r.error for r in results if r.error}),
        "wall_seconds": round(summary.wall_seconds, 2),
        "problems_per_minute": round(60 * summary.problems_per_second, 3),
        "generated_tokens": tokens,
        "tokens_per_second": round(tokens / summary.wall_seconds, 2),
        "latency_p50_s": round(percentile(latencies, 0.5), 2) if latencies else None,
        "latency_p90_s": round(percentile(latencies, 0.9), 2) if latencies else None,
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "latency_mean_s": round(statistics.fmean(latencies), 2) if latencies else None,
        "correct": sum(correct),
        "target_steps": sum(1 for t in traces for s in t.steps if s.role == "target"),
        "steps": sum(len(t.steps) for t in traces),
        "solutions": [r.trace.solution if r.trace else None for r in results],
    }


def run_point(
    config: str,
    schedule: Schedule,
    level: int,
    questions: list[str],
    golds: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    backend, policy = config.split("/")
    if backend == "vllm":
        options = "timeout=600&retries=2"
        spec = RunSpec(
            draft=f"openai:{args.draft_url}#{args.draft}?{options}",
            target=f"openai:{args.target_url}#{args.target}?{options}",
            policies=[policy],
        )
    else:
        spec = RunSpec(draft=args.draft, target=args.target, policies=[policy])
    engine_config = EngineConfig(step=StepParams(max_step_tokens=args.max_step_tokens),
                                 max_total_tokens=args.max_tokens)  # fmt: skip
    with Run(spec) as run:
        engine = run.engine(run.policy, engine_config)
        results = solve_many(engine, questions, concurrency=level, schedule=schedule)
    return point_stats(results, golds)


def plot(points: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    series = sorted({(p["config"], p["schedule"]) for p in points})
    for config, schedule in series:
        mine = sorted((p for p in points if (p["config"], p["schedule"]) == (config, schedule)),
                      key=lambda p: p["concurrency"])  # fmt: skip
        xs = [p["concurrency"] for p in mine]
        label = f"{config} ({schedule.replace('_', '-')})"
        style = "--" if schedule == "lockstep" else "-"
        ax1.plot(xs, [p["problems_per_minute"] for p in mine], "o" + style, label=label)
        ax2.plot(xs, [p["latency_p50_s"] for p in mine], "o" + style, label=label)
    ax1.set_xscale("log", base=2)
    ax2.set_xscale("log", base=2)
    ax1.set_xlabel("problems in flight (N)")
    ax2.set_xlabel("problems in flight (N)")
    ax1.set_ylabel("problems / minute")
    ax2.set_ylabel("per-problem latency, median (s)")
    ax1.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--configs", nargs="+", default=["vllm/auto", "vllm/verify", "llamacpp/auto"])
    parser.add_argument("--schedules", nargs="+", default=["per_problem", "lockstep"])
    parser.add_argument("--llamacpp-levels", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--draft", default="qwen2.5-coder-0.5b", help="named model (served under its name)")
    parser.add_argument("--target", default="qwen2.5-coder-1.5b", help="named model (served under its name)")
    parser.add_argument("--draft-url", default="http://127.0.0.1:8101/v1")
    parser.add_argument("--target-url", default="http://127.0.0.1:8102/v1")
    parser.add_argument(
        "--max-tokens", type=int, default=384, help="per-problem token cap (all configurations)"
    )
    parser.add_argument("--max-step-tokens", type=int, default=160)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vllm_throughput")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    data: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    settings = {
        "problems": args.problems,
        "max_tokens": args.max_tokens,
        "max_step_tokens": args.max_step_tokens,
    }
    if data.get("settings") not in (None, settings):
        raise SystemExit(
            f"{results_file} holds a run with other settings {data['settings']}: use another --out"
        )
    data["settings"] = settings
    data["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    points: list[dict[str, Any]] = data.setdefault("points", [])
    problems = load_dataset("gsm8k").problems[: args.problems]
    questions, golds = [p.question for p in problems], [p.answer for p in problems]
    plan = []
    for config in args.configs:
        levels = args.llamacpp_levels if config.startswith("llamacpp") else args.levels
        for schedule in args.schedules:
            for level in levels:
                if schedule == "lockstep" and (level == 1 or config.startswith("llamacpp")):
                    continue  # one problem is already in lockstep; llama.cpp takes turns either way
                plan.append((config, schedule, level))
    for config, schedule, level in plan:
        if any((p["config"], p["schedule"], p["concurrency"]) == (config, schedule, level) for p in points):
            continue
        started = time.perf_counter()
        print(f"== {config} {schedule} N={level} ...", flush=True)
        stats = run_point(config, schedule, level, questions, golds, args)
        points.append({"config": config, "schedule": schedule, "concurrency": level, **stats})
        results_file.write_text(json.dumps(data, indent=1))
        print(f"   {stats['problems_per_minute']} problems/min, p50 {stats['latency_p50_s']} s, "
              f"{stats['correct']}/{stats['problems']} correct ({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    for point in points:  # identical answers to N = 1 of the same configuration
        base = next((p for p in points if p["config"] == point["config"] and p["concurrency"] == 1), None)
        point["identical_to_n1"] = (
            sum(a == b for a, b in zip(point["solutions"], base["solutions"], strict=True)) if base else None
        )
        point["speedup_vs_n1"] = (
            round(point["problems_per_minute"] / base["problems_per_minute"], 2) if base else None
        )
    results_file.write_text(json.dumps(data, indent=1))
    plot(points, args.out / "throughput.png",
         f"GSM8K test, first {args.problems} problems, greedy, ≤{args.max_tokens} tokens each; "
         f"{args.draft} → {args.target}; {os.cpu_count()} CPUs")  # fmt: skip
    header = "| configuration | schedule | N | problems/min | vs N=1 | p50 s | p90 s | tok/s | correct | identical to N=1 | errored |"
    print(header)
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in sorted(points, key=lambda p: (p["config"], p["schedule"], p["concurrency"])):
        print(f"| {p['config']} | {p['schedule']} | {p['concurrency']} | {p['problems_per_minute']:.2f} | "
              f"{p['speedup_vs_n1']}x | {p['latency_p50_s']} | {p['latency_p90_s']} | {p['tokens_per_second']} | "
              f"{p['correct']}/{p['problems']} | {p['identical_to_n1']}/{p['problems']} | {p['errored']} |")  # fmt: skip


if __name__ == "__main__":
    main()
