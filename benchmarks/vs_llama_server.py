"""arbitrage against the tool a user already has: llama.cpp's own ``llama-server``, on the same problems,
the same GGUF files, the same threads and the project's own chat prompts, greedy, one run.

    .venv/bin/python benchmarks/vs_llama_server.py --dataset gsm8k --limit 12 \
        --out benchmarks/results/vs_llama_server/gsm8k

Configurations (``--configs``). With ``--schedule interleaved`` (the default) every configuration is
open at once (one llama-server process per server configuration, one arbitrage run per arbitrage
configuration) and each problem runs through all of them before the next problem starts: ``target``
first (its token count caps the server's), the others in an order that rotates from problem to
problem, so a slow or busy stretch of the machine falls on every configuration alike instead of on
whichever ran then. ``--schedule blocked`` runs each configuration on every problem before the next.

- ``server``: ``llama-server -m TARGET`` (target alone), ``/completion`` with the target's chat prompt;
- ``server_md3`` / ``server_md8``: the same with ``--spec-type draft-simple -md DRAFT`` token-level
  speculation (``-md`` alone only loads the draft: this llama.cpp drafts nothing without it), at most 3 / 8
  drafted tokens;
- ``target``: ``arbitrage --policy target`` (serving mode: no re-evaluation);
- ``speculate``: ``--policy target`` with token-level speculation forced on at k = 3 (not adaptive);
  ``speculate_k2`` the same at k = 2 (a batch of at most 3 rows, which repacked K-quant weights give
  decoding's own numbers; see ``benchmarks/batch_vs_decode.py``);
- ``auto``: the default, ``--policy auto`` (adaptive speculation that switches itself off where its
  measured costs say it cannot pay);
- ``target_reproducible``: ``--policy target`` in the reproducible (``aligned``) mode, for its cost.

``llama-server`` is the one on PATH, else ``--llama-server PATH``, else built (cmake) from the
llama.cpp source vendored in the pinned llama-cpp-python sdist into ``$ARBITRAGE_HOME/llama-server``.
It runs with the weight layout arbitrage's own loader picks for the target on this machine (repacked
weights, llama.cpp's default, unless the CPU has AMX and the project's probe found repacking faults:
then ``--no-repack``), ``-t THREADS``, ``-c 4096``, ``-fa on`` (flash attention, as arbitrage's
default). Each record notes ``repack``.

Latency is the wall clock of one request (server: from the request to the last byte; arbitrage: one
``Engine.solve``). arbitrage stops at the step that states a ``\\boxed{}`` answer; a server request
would go on to the end of the answer, so it is capped at the tokens arbitrage's ``target`` run wrote
for that problem (run ``target`` first), and texts are compared on arbitrage's length ("identical":
the text starts with arbitrage target's solution, whitespace normalised). Records are
one JSON line per problem and configuration (resumable; each notes its schedule and its place in the
problem's order, and the server's own ``timings`` or arbitrage's prefill/decode seconds). The summary
has per-configuration mean seconds, tokens/s, correct, each configuration's speed relative to
``server`` and to arbitrage ``target`` with a paired bootstrap 95% interval, and the ratio of generated
tokens per second to the server's (paired likewise): texts differ where batch-dependent kernels flip a
near-tie, and the server stops at an end token while arbitrage's count caps it, so the per-token rate
is the comparison of the same work. Writes ``summary.json``, ``summary.md`` and ``latency.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from arbitrage.backends.llamacpp_probe import extra_bufts_allowed
from arbitrage.backends.speculation import SpeculationConfig
from arbitrage.engine import EngineConfig
from arbitrage.evaluation.datasets import Problem, load_problems
from arbitrage.grading import grade
from arbitrage.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from arbitrage.models.store import resolve_model_path
from arbitrage.run import Run, RunSpec
from arbitrage.settings import load_settings

CONFIGS = (
    "target",
    "server",
    "server_md3",
    "server_md8",
    "speculate",
    "speculate_k2",
    "auto",
    "target_reproducible",
)
SPECULATE_K = {"speculate": 3, "speculate_k2": 2}  # forced k of the lossless-speculation configurations
PORT = 8931


def build_llama_server(home: Path) -> Path:
    """Build llama-server from the llama.cpp source vendored in the pinned llama-cpp-python sdist."""
    import importlib.metadata

    out = home / "llama-server"
    binary = out / "build" / "bin" / "llama-server"
    if binary.exists():
        return binary
    version = importlib.metadata.version("llama-cpp-python")
    work = Path(tempfile.mkdtemp(prefix="llama-sdist-"))
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(work),
         f"llama-cpp-python=={version}"], check=True,
    )  # fmt: skip
    sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    source = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
    out.mkdir(parents=True, exist_ok=True)
    build = out / "build"
    flags = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
             "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_OPENSSL=OFF"]  # fmt: skip
    subprocess.run(["cmake", "-S", str(source), "-B", str(build), *flags], check=True)
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-server", f"-j{os.cpu_count() or 2}"], check=True
    )
    shutil.rmtree(work, ignore_errors=True)
    return binary


def find_llama_server(given: Path | None) -> Path:
    if given is not None:
        return given
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    return build_llama_server(load_settings().home)


class Server:
    """A llama-server process on 127.0.0.1 for one configuration."""

    def __init__(
        self, binary: Path, target: Path, draft: Path | None, n_max: int, threads: int, port: int
    ) -> None:
        self.port = port
        args = [str(binary), "-m", str(target), "--host", "127.0.0.1", "--port", str(port), "-c", "4096",
                "-t", str(threads), "-tb", str(threads), "-fa", "on", "-np", "1",
                "--no-webui"]  # fmt: skip
        self.repack = extra_bufts_allowed(target, load_settings())  # as arbitrage loads the target
        if not self.repack:
            args.append("--no-repack")
        if draft is not None:
            args += [  # -md alone only loads the draft: without --spec-type nothing is drafted
                "--spec-type",
                "draft-simple",
                "-md",
                str(draft),
                "--spec-draft-n-max",
                str(n_max),
                "-td",
                str(threads),
                "-tbd",
                str(threads),
            ]
        self.log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}); see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"llama-server did not get ready; see {self.log.name}")

    def complete(self, prompt: str, n_predict: int = 2048) -> dict[str, Any]:
        body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0, "top_k": 1, "cache_prompt": False,
                "seed": 0}  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/completion", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        t0 = time.perf_counter()
        with urllib.request.urlopen(request, timeout=1800) as r:
            data = json.loads(r.read())
        data["_seconds"] = time.perf_counter() - t0
        return dict(data)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def done_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}


def append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def token_budgets(out: Path) -> dict[str, int]:
    """Per problem, the tokens arbitrage's target-only run wrote: the server writes as many at most.

    arbitrage stops at the step that states a boxed answer; the server would go on to the end of the
    answer. Capping it at the same length compares the same work (llama-server stops earlier at EOS).
    """
    path = out / "target.jsonl"
    if not path.exists():
        return {}
    return {
        r["id"]: int(r["tokens"]) for r in map(json.loads, path.read_text().splitlines()) if r.get("tokens")
    }


class ServerRunner:
    """One llama-server configuration: started at :meth:`open`, one request per problem."""

    def __init__(self, config: str, prompts: dict[str, str], args: Any, port: int) -> None:
        self.config, self.prompts, self.args, self.port = config, prompts, args, port
        self.server: Server | None = None

    def open(self) -> None:
        n_max = {"server": 0, "server_md3": 3, "server_md8": 8}[self.config]
        draft = resolve_model_path(self.args.draft) if n_max else None
        self.server = Server(self.args.binary, resolve_model_path(self.args.target), draft, n_max,
                             self.args.threads, self.port)  # fmt: skip
        self.server.complete(next(iter(self.prompts.values()))[:200], 16)  # warm-up, not recorded

    def solve(self, problem: Problem, budget: int | None) -> dict[str, Any]:
        assert self.server is not None
        data = self.server.complete(self.prompts[problem.id], budget or 2048)
        text = str(data.get("content", ""))
        timings = data.get("timings", {})
        g = grade(text, problem.answer)
        if self.config.startswith("server_md") and timings.get("draft_n") is None:
            raise SystemExit(f"{self.config}: llama-server drafted nothing for problem {problem.id} "
                             f"(no draft_n in its timings; see {self.server.log.name})")  # fmt: skip
        return {"id": problem.id, "seconds": data["_seconds"], "tokens": timings.get("predicted_n"),
                "draft_accepted": timings.get("draft_n_accepted"), "draft_n": timings.get("draft_n"),
                "prompt_ms": timings.get("prompt_ms"), "predicted_ms": timings.get("predicted_ms"),
                "repack": self.server.repack, "correct": g.correct, "predicted": g.predicted, "text": text}  # fmt: skip

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


class ArbitrageRunner:
    """One arbitrage configuration: its models loaded at :meth:`open`, one ``Engine.solve`` per problem."""

    def __init__(self, config: str, args: Any) -> None:
        self.config, self.args = config, args
        self.run: Run | None = None

    def open(self) -> None:
        policy = "auto" if self.config == "auto" else "target"
        k = SPECULATE_K.get(self.config)
        speculation = SpeculationConfig(adaptive=False, k_start=k, k_max=k) if k else None
        spec = RunSpec(draft=self.args.draft, target=self.args.target, policies=[policy], speculation=speculation,
                       reproducible=self.config == "target_reproducible")  # fmt: skip
        self.run = Run(spec).__enter__()
        self.engine = self.run.engine(config=EngineConfig())
        self.engine.solve("What is 2 + 3?")  # warm-up, not recorded

    def solve(self, problem: Problem, budget: int | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        trace = self.engine.solve(problem.question)
        seconds = time.perf_counter() - t0
        stats: list[Any] = [s.target.extra.get("speculation") for s in trace.steps if s.target is not None]
        spec_totals = {k: sum(int(s[k]) for s in stats if s) for k in ("rounds", "proposed", "accepted")}
        usage = trace.usage["target"]
        g = grade(trace.solution, problem.answer)
        return {"id": problem.id, "seconds": seconds, "tokens": usage.generated_tokens,
                "prefill_seconds": usage.prefill_seconds, "decode_seconds": usage.decode_seconds,
                "prefill_tokens": usage.prefill_tokens, "wall_latency_seconds": trace.wall_latency_seconds,
                "correct": g.correct, "predicted": g.predicted, "speculation": spec_totals, "policy": trace.policy,
                "text": trace.solution}  # fmt: skip

    def close(self) -> None:
        if self.run is not None:
            self.run.__exit__(None, None, None)
            self.run = None


def problem_order(configs: list[str], index: int) -> list[str]:
    """The configurations for problem ``index``: ``target`` first (it caps the server's tokens), the
    rest rotated by ``index`` so that each takes every place in turn."""
    head = [c for c in configs if c == "target"]
    rest = [c for c in configs if c != "target"]
    shift = index % len(rest) if rest else 0
    return head + rest[shift:] + rest[:shift]


def run_all(
    configs: list[str], problems: list[Problem], prompts: dict[str, str], out: Path, args: Any
) -> None:
    """Run every configuration on every problem (see the module docstring for the two schedules)."""
    runners: dict[str, ServerRunner | ArbitrageRunner] = {
        c: ServerRunner(c, prompts, args, PORT + i) if c.startswith("server") else ArbitrageRunner(c, args)
        for i, c in enumerate(configs)
    }
    opened: set[str] = set()
    done = {c: done_ids(out / f"{c}.jsonl") for c in configs}

    def one(config: str, problem: Problem, place: int) -> None:
        if config not in opened:
            runners[config].open()
            opened.add(config)
        budget = token_budgets(out).get(problem.id)
        row = runners[config].solve(problem, budget)
        row.update(schedule=args.schedule, place=place, finished_at=time.time())
        append(out / f"{config}.jsonl", row)
        done[config].add(problem.id)
        print(f"{config} {problem.id} {row['seconds']:.1f}s tokens={row['tokens']} correct={row['correct']}",
              flush=True)  # fmt: skip

    try:
        if args.schedule == "blocked":
            for config in configs:
                for problem in problems:
                    if problem.id not in done[config]:
                        one(config, problem, 0)
                runners[config].close()
        else:
            for index, problem in enumerate(problems):
                order = [c for c in problem_order(configs, index) if problem.id not in done[c]]
                for place, config in enumerate(order):
                    one(config, problem, place)
    finally:
        for runner in runners.values():
            runner.close()


def paired_ratio(base: np.ndarray, mine: np.ndarray, resamples: int = 2000) -> tuple[float, float, float]:
    """mean(base) / mean(mine) (a speedup of ``mine`` over ``base``) with a paired bootstrap interval."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(base), size=(resamples, len(base)))
    ratios = base[picks].mean(axis=1) / mine[picks].mean(axis=1)
    return (
        float(base.mean() / mine.mean()),
        float(np.percentile(ratios, 2.5)),
        float(np.percentile(ratios, 97.5)),
    )


def paired_rate_ratio(
    base_seconds: np.ndarray,
    base_tokens: np.ndarray,
    seconds: np.ndarray,
    tokens: np.ndarray,
    resamples: int = 2000,
) -> tuple[float, float, float]:
    """(tokens/s) over the base's (tokens/s), totals over problems, with a paired bootstrap interval."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(base_seconds), size=(resamples, len(base_seconds)))

    def rate(sec: np.ndarray, tok: np.ndarray) -> np.ndarray:
        return tok[picks].sum(axis=1) / sec[picks].sum(axis=1)

    ratios = rate(seconds, tokens) / rate(base_seconds, base_tokens)
    point = (tokens.sum() / seconds.sum()) / (base_tokens.sum() / base_seconds.sum())
    return float(point), float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def summarise(out: Path, problems: list[Problem], configs: list[str]) -> dict[str, Any]:
    rows = {c: {r["id"]: r for r in map(json.loads, (out / f"{c}.jsonl").read_text().splitlines())}
            for c in configs if (out / f"{c}.jsonl").exists()}  # fmt: skip
    ids = [p.id for p in problems if all(p.id in r for r in rows.values())]
    summary: dict[str, Any] = {"problems": len(ids), "configs": {}}
    if not ids:
        return summary
    reference = rows.get("target")
    for config, recs in rows.items():
        seconds = np.array([recs[i]["seconds"] for i in ids])
        tokens = np.array([recs[i]["tokens"] or 0 for i in ids], dtype=float)
        entry: dict[str, Any] = {
            "mean_seconds": float(seconds.mean()),
            "tokens_per_second": float(tokens.sum() / seconds.sum()),
            "correct": int(sum(recs[i]["correct"] for i in ids)),
        }
        if "server" in rows:
            base = np.array([rows["server"][i]["seconds"] for i in ids])
            entry["speed_vs_server"] = paired_ratio(base, seconds)
            base_tokens = np.array([rows["server"][i]["tokens"] or 0 for i in ids], dtype=float)
            entry["token_rate_vs_server"] = paired_rate_ratio(base, base_tokens, seconds, tokens)
        schedules = {recs[i].get("schedule", "blocked") for i in ids}
        entry["schedule"] = "+".join(sorted(schedules))
        if "target" in rows and config != "target":
            base = np.array([rows["target"][i]["seconds"] for i in ids])
            entry["speed_vs_target"] = paired_ratio(base, seconds)
        if reference is not None:
            ref = {i: normalise(reference[i]["text"]) for i in ids}
            entry["identical_to_target"] = int(
                sum(normalise(recs[i]["text"]).startswith(ref[i]) for i in ids)
            )
        summary["configs"][config] = entry
    return summary


def write_summary(out: Path, summary: dict[str, Any], title: str, name: str = "summary") -> str:
    """Write ``NAME.json``, ``NAME.md`` and the latency plot (``latency.png``, or ``NAME.png``) into ``out``."""
    (out / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [f"# {title}", "", f"{summary['problems']} problems, every configuration on the same ones.", "",
             "| configuration | mean s / problem | tokens/s | correct | vs llama-server [95% CI] | tokens/s vs llama-server [95% CI] | vs arbitrage target [95% CI] | text as arbitrage target | schedule |",
             "| --- | ---: | ---: | ---: | --- | --- | --- | ---: | --- |"]  # fmt: skip

    def ci(v: Any) -> str:
        return f"{v[0]:.2f}x [{v[1]:.2f}, {v[2]:.2f}]" if v else "-"

    for config, e in summary["configs"].items():
        lines.append(f"| {config} | {e['mean_seconds']:.2f} | {e['tokens_per_second']:.1f} | {e['correct']} | "
                     f"{ci(e.get('speed_vs_server'))} | {ci(e.get('token_rate_vs_server'))} | "
                     f"{ci(e.get('speed_vs_target'))} | {e.get('identical_to_target', '-')}/{summary['problems']} | "
                     f"{e.get('schedule', '-')} |")  # fmt: skip
    lines += ["", "Speed ratios: the reference's mean seconds over the configuration's (> 1: faster), paired "
              "bootstrap over problems; an interval containing 1 is no difference. Tokens/s vs llama-server: "
              "generated tokens per second over the server's, the same work whatever text each wrote.",
              "Schedule: interleaved (every configuration on a problem before the next problem) or blocked "
              "(each configuration on every problem in turn, minutes to hours apart)."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(text)
    if summary["configs"]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(summary["configs"])
        means = [summary["configs"][n]["mean_seconds"] for n in names]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.barh(names, means, color=["#888" if n.startswith("server") else "#37a" for n in names])
        ax.set_xlabel("mean seconds per problem")
        ax.set_title(title)
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(out / ("latency.png" if name == "summary" else f"{name}.png"), dpi=120)
        plt.close(fig)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gsm8k")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--draft", default=DEFAULT_DRAFT)
    parser.add_argument("--target", default=DEFAULT_TARGET)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--llama-server", dest="binary", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--schedule", choices=("interleaved", "blocked"), default="interleaved")
    parser.add_argument(
        "--summarise-only",
        action="store_true",
        help="run nothing: summarise the rows already in --out over --configs and --limit",
    )
    parser.add_argument(
        "--summary-name",
        default="summary",
        help="file stem of the summary (default summary: summary.md, summary.json)",
    )
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations: {', '.join(sorted(unknown))} (known: {', '.join(CONFIGS)})")
    os.environ.setdefault("ARBITRAGE_THREADS", str(args.threads))
    name, problems = load_problems(args.dataset, None, offset=args.offset, limit=args.limit)
    title = f"arbitrage vs llama-server: {name}"
    if args.summarise_only:
        if not args.out.is_dir():
            parser.error(f"--summarise-only: {args.out} is not a folder of rows")
        print(write_summary(args.out, summarise(args.out, problems, configs), title, args.summary_name))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "run.json").write_text(json.dumps({**vars(args), "out": str(args.out), "binary": str(args.binary),
                                                   "configs": configs}, indent=1) + "\n")  # fmt: skip
    prompts: dict[str, str] = {}
    if any(c.startswith("server") for c in configs):
        args.binary = find_llama_server(args.binary)
        from arbitrage.backends.loader import GeneratorOptions, load_generator

        target = load_generator(args.target, GeneratorOptions())
        prompts = {p.id: target.render_prompt(p.question) for p in problems}  # type: ignore[attr-defined]
        target.close()
    run_all(configs, problems, prompts, args.out, args)
    print(write_summary(args.out, summarise(args.out, problems, configs), title, args.summary_name))


if __name__ == "__main__":
    main()
