"""Problems per second against an OpenAI-compatible llama.cpp server at several concurrency levels.

Starts ``python -m arbitrage.backends.llamacpp_server`` (llama-cpp-python's server, AMX-safe) with one
model, then solves the same first N GSM8K test problems with ``solve_many`` at each concurrency level,
draft and target both ``openai:`` specs on that server (random policy, greedy, so every level does the
same work). Reports problems/s, generated tokens/s, per-problem latency and time to first token per step,
and writes ``OUT/results.json`` and ``OUT/concurrency.png``. The server runs verbose, and its
``Llama.generate: N prefix-match hit, remaining M prompt tokens to eval`` lines give, per level, how many
prompt tokens it had to evaluate rather than take from its KV cache.

llama-cpp-python's server has no parallel slots: one ``Llama`` behind a global lock runs one request at a
time, so concurrent requests queue (and, having different prefixes, evict each other's KV cache). The
benchmark measures that honestly; a batching server (vLLM, SGLang, llama.cpp's C++ ``llama-server -np N``)
is what turns concurrency into throughput.

    python benchmarks/concurrency.py --problems 8 --levels 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from arbitrage.backends.base import StepContext, StepParams
from arbitrage.backends.llamacpp_server import ServerProcess
from arbitrage.backends.loader import load_generator
from arbitrage.concurrent import ProblemResult, solve_many, summarise
from arbitrage.engine import Engine, EngineConfig
from arbitrage.policies import RandomPolicy

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "datasets" / "gsm8k_test.jsonl"


def questions(limit: int) -> list[str]:
    with GSM8K.open() as f:
        return [json.loads(line)["question"] for _, line in zip(range(limit), f, strict=False)]


def level_stats(results: list[ProblemResult]) -> dict[str, Any]:
    summary = summarise(results)
    traces = [r.trace for r in results if r.trace is not None]
    latencies = sorted(r.seconds for r in results if r.ok)
    outputs = [o for t in traces for s in t.steps for o in (s.draft, s.target) if o is not None]
    tokens = sum(u.generated_tokens for t in traces for u in t.usage.values())
    ttft = [o.prefill_seconds for o in outputs]
    return {
        "problems": summary.problems,
        "failed": summary.failed,
        "errors": sorted({r.error for r in results if r.error}),
        "wall_seconds": round(summary.wall_seconds, 3),
        "problems_per_second": round(summary.problems_per_second, 4),
        "generated_tokens": tokens,
        "tokens_per_second": round(tokens / summary.wall_seconds, 2),
        "step_calls": sum(u.calls for t in traces for u in t.usage.values()),
        "latency_mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_max_s": round(latencies[-1], 3) if latencies else None,
        "ttft_mean_s": round(statistics.fmean(ttft), 3) if ttft else None,
        "answers": [r.trace.answer if r.trace else None for r in results],
    }


PREFIX_LINE = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")


def server_prefill(log_text: str) -> dict[str, int]:
    """Prompt tokens the server reused from / evaluated past its KV cache, from its verbose log."""
    hits = [(int(a), int(b)) for a, b in PREFIX_LINE.findall(log_text)]
    return {
        "requests_with_prefix_match": len(hits),
        "server_reused_prompt_tokens": sum(a for a, _ in hits),
        "server_evaluated_prompt_tokens": sum(b for _, b in hits),
    }


def aggregate(runs: list[dict[str, Any]], levels: list[int]) -> list[dict[str, Any]]:
    """Per concurrency level: the mean of each measure over rounds, and the range of problems/s."""
    out = []
    for concurrency in levels:
        mine = [r for r in runs if r["concurrency"] == concurrency]
        rates = [r["problems_per_second"] for r in mine]
        row: dict[str, Any] = {"concurrency": concurrency, "rounds": len(mine)}
        for key in ("problems_per_second", "tokens_per_second", "latency_mean_s", "ttft_mean_s"):
            values = [r[key] for r in mine if r[key] is not None]
            row[key] = round(statistics.fmean(values), 4) if values else None
        row["problems_per_second_range"] = [min(rates), max(rates)]
        for key in ("generated_tokens", "server_evaluated_prompt_tokens", "server_reused_prompt_tokens"):
            row[key] = round(statistics.fmean(r[key] for r in mine))
        row["failed"] = sum(r["failed"] for r in mine)
        out.append(row)
    return out


def plot(runs: list[dict[str, Any]], summary: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [row["concurrency"] for row in summary]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(xs, [row["problems_per_second"] for row in summary], "o-", label="mean over rounds")
    ax1.plot(
        [r["concurrency"] for r in runs], [r["problems_per_second"] for r in runs], "x", color="gray",
        label="each round",
    )  # fmt: skip
    ax1.set_ylabel("problems / s")
    ax1.legend(fontsize=8)
    ax2.plot(xs, [row["latency_mean_s"] for row in summary], "o-", label="per-problem latency (mean)")
    ax2.plot(xs, [row["ttft_mean_s"] for row in summary], "s--", label="time to first token per step (mean)")
    ax2.set_ylabel("seconds")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("problems in flight")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--max-steps", type=int, default=3)
    ap.add_argument("--max-step-tokens", type=int, default=32)
    ap.add_argument("--p", type=float, default=0.5, help="random policy: escalation probability")
    ap.add_argument("--threads", type=int, default=2, help="server CPU threads")
    ap.add_argument("--rounds", type=int, default=2, help="levels run in order, then reversed, ...")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "concurrency")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    problems = questions(args.problems)
    load_start = os.getloadavg()
    config = EngineConfig(step=StepParams(max_step_tokens=args.max_step_tokens), max_steps=args.max_steps)
    runs: list[dict[str, Any]] = []
    log = Path(tempfile.mkdtemp(prefix="arbitrage-bench-")) / "server.log"
    print(f"server log: {log}", flush=True)
    with ServerProcess(args.model, log, threads=args.threads, verbose=True) as server:
        base = f"openai:{server.base_url}#{args.model}?logprobs=off"
        draft = load_generator(f"{base}&name=draft")
        target = load_generator(f"{base}&name=target")
        draft.generate_step(StepContext("Warm up: 1 + 1?"), StepParams(max_step_tokens=4))
        engine = Engine(draft, target, RandomPolicy(args.p, seed=0), config)
        order = [
            (round_, level)
            for round_ in range(args.rounds)
            for level in (args.levels if round_ % 2 == 0 else args.levels[::-1])
        ]  # alternating order: a drift in the machine's load hits every level alike
        for round_, concurrency in order:
            start = time.perf_counter()
            log_start = len(server.log())
            results = solve_many(engine, problems, concurrency=concurrency)
            prefill = server_prefill(server.log()[log_start:])
            stats = {"round": round_, "concurrency": concurrency, **level_stats(results), **prefill}
            stats["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
            runs.append(stats)
            print(
                f"round {round_} concurrency {concurrency}: {stats['problems_per_second']:.3f} problems/s, "
                f"{stats['tokens_per_second']:.1f} tok/s, latency mean {stats['latency_mean_s']} s, "
                f"TTFT mean {stats['ttft_mean_s']} s, {stats['generated_tokens']} tokens, "
                f"server evaluated {stats['server_evaluated_prompt_tokens']} prompt tokens "
                f"(reused {stats['server_reused_prompt_tokens']}), "
                f"{stats['failed']} failed ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        draft.close()
        target.close()
    report = {
        "benchmark": "concurrency",
        "server": "llama-cpp-python server via arbitrage.backends.llamacpp_server (no parallel slots)",
        "model": args.model,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_start": load_start,
            "load_avg_end": os.getloadavg(),
        },
        "summary": (summary := aggregate(runs, args.levels)),
        "runs": runs,
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    title = f"{args.model} on llama-cpp-python's server (one request at a time), {os.cpu_count()} CPUs"
    plot(runs, summary, args.out / "concurrency.png", title)
    base_rate = summary[0]["problems_per_second"]
    print("\nmeans over rounds")
    print("concurrency  problems/s (range)     speed-up  latency s  TTFT s  tokens  server prefill tokens")
    for row in summary:
        low, high = row["problems_per_second_range"]
        print(
            f"{row['concurrency']:>11}  {row['problems_per_second']:.3f} ({low:.3f}-{high:.3f})  "
            f"{row['problems_per_second'] / base_rate:>7.2f}x  {row['latency_mean_s']:>9.1f}  "
            f"{row['ttft_mean_s']:>6.2f}  {row['generated_tokens']:>6}  "
            f"{row['server_evaluated_prompt_tokens']:>21}"
        )
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'concurrency.png'}")


if __name__ == "__main__":
    main()
