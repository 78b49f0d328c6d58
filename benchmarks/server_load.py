"""Load test of `arbitrage serve`: N concurrent requests against a server with few solve slots and a queue.

Starts the server in-process on a free loopback port (real models, draft and target), sends N requests
at once (a mix of chat, streamed chat and text completions over GSM8K questions), and checks that every
request got either a full answer or a clean 429 (OpenAI error body + Retry-After), that the server is
still up, and that the /metrics counts add up. Bounded in count (--requests) and time (--time-limit:
the server's per-request timeout and the client's). Loopback only.

Writes ``OUT/results.json`` (configuration, every request, the summary, the metrics checks) and
``OUT/load.png`` (request timeline and latencies), and prints a summary.

    python benchmarks/server_load.py --out benchmarks/results/server_load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("chat", "stream", "completion")


def questions(limit: int) -> list[str]:
    path = ROOT.parent / "shared" / "datasets" / "gsm8k_test.jsonl"
    # a checkout without the shared data gets simple arithmetic questions
    rows = [json.loads(line)["question"] for line in path.open()][:limit] if path.is_file() else []
    rows += [f"What is {i} + {i + 1}?" for i in range(limit - len(rows))]
    return rows


async def one_request(client: httpx.AsyncClient, i: int, question: str, start: float) -> dict[str, Any]:
    kind = KINDS[i % len(KINDS)]
    record: dict[str, Any] = {"i": i, "kind": kind, "sent": time.perf_counter() - start}
    messages = [{"role": "user", "content": question}]
    try:
        if kind == "completion":
            response = await client.post("/v1/completions", json={"model": "arbitrage", "prompt": question})
            record["status"] = response.status_code
            body = response.json()
            if response.status_code == 200:
                record.update(text=body["choices"][0]["text"], report=body["arbitrage"], usage=body["usage"])
        elif kind == "chat":
            response = await client.post(
                "/v1/chat/completions", json={"model": "arbitrage", "messages": messages}
            )
            record["status"] = response.status_code
            body = response.json()
            if response.status_code == 200:
                text = body["choices"][0]["message"]["content"]
                record.update(text=text, report=body["arbitrage"], usage=body["usage"])
        else:
            payload = {
                "model": "arbitrage",
                "messages": messages,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with client.stream("POST", "/v1/chat/completions", json=payload) as response:
                record["status"] = response.status_code
                if response.status_code == 200:
                    chunks: list[Any] = []
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        data = line[6:]
                        if data == "[DONE]":
                            record["done"] = True
                            break
                        chunk = json.loads(data)
                        if "error" in chunk:
                            record["stream_error"] = chunk["error"]["message"]
                            break
                        if "first_step" not in record and chunk.get("arbitrage", {}).get("step"):
                            record["first_step"] = time.perf_counter() - start
                        chunks.append(chunk)
                    text = "".join(
                        (c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"]
                    )
                    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
                    record.update(text=text, report=finals[-1]["arbitrage"] if finals else None)
                    record["usage"] = chunks[-1].get("usage") if chunks else None
                    body = None
                else:
                    await response.aread()
                    body = response.json()
        if record["status"] != 200:
            record["error"] = body["error"] if isinstance(body, dict) else None
            record["retry_after"] = response.headers.get("retry-after")
    except Exception as exc:  # a transport failure is a result too: the check below reports it
        record["status"] = None
        record["exception"] = f"{type(exc).__name__}: {exc}"
    record["ended"] = time.perf_counter() - start
    return record


def metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def check(records: list[dict[str, Any]], metrics: str, health: dict[str, Any]) -> dict[str, Any]:
    """Every request answered in full or refused cleanly; server up; metrics agree with the clients."""
    ok = [r for r in records if r["status"] == 200]
    busy = [r for r in records if r["status"] == 429]
    full = [
        r
        for r in ok
        if r.get("report")
        and r["text"] == "\n\n".join(s["text"] for s in r["report"]["steps"])
        and (r["kind"] != "stream" or r.get("done"))
    ]
    clean_429 = [
        r
        for r in busy
        if r.get("error", {}).get("type") == "rate_limit_error" and int(r.get("retry_after") or 0) >= 1
    ]
    answered = sum(
        metric(metrics, "arbitrage_requests_total", endpoint=e, code="200")
        for e in ("/v1/chat/completions", "/v1/completions")
    )
    steps = sum(r["report"]["num_steps"] for r in ok if r.get("report"))
    checks = {
        "every_request_200_or_429": len(ok) + len(busy) == len(records),
        "every_200_is_a_full_answer": len(full) == len(ok),
        "every_429_is_clean": len(clean_429) == len(busy),
        "server_up_and_idle": health.get("status") == "ok"
        and health["running"] == 0
        and health["queued"] == 0,
        "metrics_200_equals_answers": answered == len(ok),
        "metrics_429_equals_refusals": metric(metrics, "arbitrage_requests_total", code="429") == len(busy)
        and metric(metrics, "arbitrage_rejected_total") == len(busy),
        "metrics_solves_equal_answers": metric(metrics, "arbitrage_solves_total", outcome="completed")
        == len(ok)
        and metric(metrics, "arbitrage_solves_total") == len(ok),
        "metrics_steps_equal_answer_steps": metric(metrics, "arbitrage_steps_total") == steps,
    }
    checks["all"] = all(checks.values())
    return checks


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "min": ordered[0],
        "p50": at(0.5),
        "p90": at(0.9),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def summarise(records: list[dict[str, Any]], wall: float, metrics: str) -> dict[str, Any]:
    ok = [r for r in records if r["status"] == 200]
    busy = [r for r in records if r["status"] == 429]
    reports = [r["report"] for r in ok if r.get("report")]
    tokens = sum(r["usage"]["completion_tokens"] for r in ok if r.get("usage"))
    return {
        "requests": len(records),
        "answered_200": len(ok),
        "refused_429": len(busy),
        "other": len(records) - len(ok) - len(busy),
        "wall_seconds": wall,
        "answers_per_minute": 60 * len(ok) / wall if wall else None,
        "answer_tokens_per_second": tokens / wall if wall else None,
        "latency_200_s": percentiles([r["ended"] - r["sent"] for r in ok]),
        "latency_429_s": percentiles([r["ended"] - r["sent"] for r in busy]),
        "queue_wait_s": percentiles([rep["seconds"]["queue"] for rep in reports]),
        "solve_s": percentiles([rep["seconds"]["solve"] for rep in reports]),
        "first_step_s_streams": percentiles([r["first_step"] - r["sent"] for r in ok if "first_step" in r]),
        "steps_per_answer": statistics.fmean(rep["num_steps"] for rep in reports) if reports else None,
        "target_call_rate_mean": statistics.fmean(rep["target_call_rate"] or 0 for rep in reports)
        if reports
        else None,
        "steps_by_model": {
            role: sum(rep["steps_by_model"][role] for rep in reports) for role in ("draft", "target")
        },
        "retry_after_s": sorted({int(r["retry_after"]) for r in busy if r.get("retry_after")}),
        "metrics_escalations": metric(metrics, "arbitrage_escalations_total"),
        "metrics_model_calls": {
            role: metric(metrics, "arbitrage_model_calls_total", role=role) for role in ("draft", "target")
        },
    }


def plot(records: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (timeline, hist) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    ordered = sorted(records, key=lambda r: (r["status"] != 200, r["sent"]))
    for row, r in enumerate(ordered):
        color = {200: "tab:green", 429: "tab:red"}.get(r["status"], "black")
        timeline.barh(row, max(r["ended"] - r["sent"], 0.02), left=r["sent"], color=color, height=0.8)
        if r.get("report"):
            queue = r["report"]["seconds"]["queue"]
            timeline.barh(row, queue, left=r["sent"], color="tab:olive", height=0.8)
        if "first_step" in r:
            timeline.plot(r["first_step"], row, marker="|", color="black", markersize=6)
    timeline.set_xlabel("seconds since the first request")
    timeline.set_ylabel("request (answered first, by send time)")
    timeline.set_title("timeline: green = solving/answer, olive = queued, red = 429, | = first streamed step")
    import numpy as np

    ok = [r["ended"] - r["sent"] for r in records if r["status"] == 200]
    busy = [r["ended"] - r["sent"] for r in records if r["status"] == 429]
    every = [max(v, 1e-3) for v in ok + busy]
    if every:
        bins = np.geomspace(min(every) / 1.2, max(every) * 1.2, 30)
        if ok:
            hist.hist(ok, bins=bins, color="tab:green", alpha=0.8, label=f"200 ({len(ok)})")
        if busy:
            hist.hist(busy, bins=bins, color="tab:red", alpha=0.8, label=f"429 ({len(busy)})")
    hist.set_xscale("log")
    hist.set_xlabel("latency (s, log scale)")
    hist.set_ylabel("requests")
    hist.legend()
    hist.set_title("latency by outcome")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def drive(
    url: str, qs: list[str], time_limit: float
) -> tuple[list[dict[str, Any]], float, str, dict[str, Any]]:
    limits = httpx.Limits(max_connections=len(qs) + 4, max_keepalive_connections=len(qs) + 4)
    async with httpx.AsyncClient(base_url=url, timeout=time_limit + 30, limits=limits) as client:
        start = time.perf_counter()
        records = await asyncio.gather(*(one_request(client, i, q, start) for i, q in enumerate(qs)))
        wall = time.perf_counter() - start
        metrics = (await client.get("/metrics")).text
        health = (await client.get("/health")).json()
    return list(records), wall, metrics, health


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draft", default="smollm2-135m")
    ap.add_argument("--target", default="smollm2-135m")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--max-concurrency", type=int, default=2)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=3)
    ap.add_argument("--max-step-tokens", type=int, default=32)
    ap.add_argument("--p", type=float, default=0.5, help="random policy: escalation probability")
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads per model")
    ap.add_argument(
        "--time-limit", type=float, default=600.0, help="per-request timeout (s), server and client"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "server_load")
    args = ap.parse_args()
    if args.requests > 200:
        ap.error("--requests is capped at 200 (a bounded load test)")
    os.environ["ARBITRAGE_THREADS"] = str(args.threads)

    from arbitrage.run import Run
    from arbitrage.server import BackgroundServer, ServerPlan, ServerSettings, create_app

    settings = ServerSettings(
        draft=args.draft,
        target=args.target,
        policy="random",
        policy_options={"p": args.p},
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        max_steps=args.max_steps,
        max_step_tokens=args.max_step_tokens,
        n_ctx=args.n_ctx,
        request_timeout=args.time_limit,
        host="127.0.0.1",
    )
    plan = ServerPlan.resolve(settings)
    t0 = time.perf_counter()
    run = Run(plan.run_spec()).open()
    load_seconds = time.perf_counter() - t0
    load_before = os.getloadavg()
    with run, BackgroundServer(create_app(plan, run=run)) as server:
        records, wall, metrics, health = asyncio.run(
            drive(server.url, questions(args.requests), args.time_limit)
        )
    load_after = os.getloadavg()
    checks = check(records, metrics, health)
    summary = summarise(records, wall, metrics)
    config = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model_load_seconds": load_seconds,
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "python": platform.python_version(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "config": config,
        "summary": summary,
        "checks": checks,
        "health_after": health,
        "requests": records,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    (args.out / "metrics.txt").write_text(metrics)
    title = (
        f"{args.requests} concurrent requests, {args.max_concurrency} slots + queue {args.max_queue}; "
        f"draft {args.draft}, target {args.target}, random p={args.p}, ≤{args.max_steps} steps × "
        f"≤{args.max_step_tokens} tok; {os.cpu_count()} CPUs, {args.threads} thread/model"
    )
    plot(records, args.out / "load.png", title)
    print(title)
    print(
        f"answered {summary['answered_200']}, refused 429 {summary['refused_429']}, other {summary['other']} "
        f"in {wall:.1f} s ({summary['answers_per_minute']:.1f} answers/min)"
    )
    for key in ("latency_200_s", "latency_429_s", "queue_wait_s", "solve_s", "first_step_s_streams"):
        value = summary[key]
        if value:
            print(f"  {key:22s} p50 {value['p50']:.2f}  p90 {value['p90']:.2f}  max {value['max']:.2f}")
    print(f"  steps/answer {summary['steps_per_answer']}, steps by model {summary['steps_by_model']}")
    print(f"  Retry-After values {summary['retry_after_s']}")
    print("checks: " + ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in checks.items()))
    print(f"wrote {args.out / 'results.json'} and {args.out / 'load.png'}")


if __name__ == "__main__":
    main()
