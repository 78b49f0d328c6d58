"""arbitrage against the tool a user already has: llama.cpp's own ``llama-server``, on the same problems,
the same GGUF files, the same threads and the project's own chat prompts, greedy, one run.

    .venv/bin/python benchmarks/vs_llama_server.py --dataset gsm8k --limit 12 \
        --out benchmarks/results/vs_llama_server/gsm8k

Configurations (``--configs``, in this order; each runs on every problem before the next starts):

- ``server``: ``llama-server -m TARGET`` (target alone), ``/completion`` with the target's chat prompt;
- ``server_md3`` / ``server_md8``: the same with ``--spec-type draft-simple -md DRAFT`` token-level
  speculation (``-md`` alone only loads the draft: this llama.cpp drafts nothing without it), at most 3 / 8
  drafted tokens;
- ``target``: ``arbitrage --policy target`` (serving mode: no re-evaluation);
- ``speculate``: ``--policy target`` with token-level speculation forced on at k = 3 (not adaptive);
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
one JSON line per problem and configuration (resumable); the summary has per-configuration mean
seconds, tokens/s, correct, and each configuration's speed relative to ``server`` with a paired
bootstrap 95% interval. Writes ``summary.json``, ``summary.md`` and ``latency.png``.
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

CONFIGS = ("target", "server", "server_md3", "server_md8", "speculate", "auto", "target_reproducible")
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

    def __init__(self, binary: Path, target: Path, draft: Path | None, n_max: int, threads: int) -> None:
        args = [str(binary), "-m", str(target), "--host", "127.0.0.1", "--port", str(PORT), "-c", "4096",
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
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"llama-server did not get ready; see {self.log.name}")

    def complete(self, prompt: str, n_predict: int = 2048) -> dict[str, Any]:
        body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0, "top_k": 1, "cache_prompt": False,
                "seed": 0}  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{PORT}/completion", data=json.dumps(body).encode(),
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


def run_server(config: str, problems: list[Problem], prompts: dict[str, str], out: Path, args: Any) -> None:
    path = out / f"{config}.jsonl"
    todo = [p for p in problems if p.id not in done_ids(path)]
    if not todo:
        return
    n_max = {"server": 0, "server_md3": 3, "server_md8": 8}[config]
    draft = resolve_model_path(args.draft) if n_max else None
    server = Server(args.binary, resolve_model_path(args.target), draft, n_max, args.threads)
    try:
        server.complete(prompts[todo[0].id][:200], 16)  # warm-up, not recorded
        budget = token_budgets(out)
        for i, problem in enumerate(todo, 1):
            data = server.complete(prompts[problem.id], budget.get(problem.id, 2048))
            text = str(data.get("content", ""))
            timings = data.get("timings", {})
            g = grade(text, problem.answer)
            if config.startswith("server_md") and timings.get("draft_n") is None:
                raise SystemExit(f"{config}: llama-server drafted nothing for problem {problem.id} "
                                 f"(no draft_n in its timings; see {server.log.name})")  # fmt: skip
            append(path, {"id": problem.id, "seconds": data["_seconds"], "tokens": timings.get("predicted_n"),
                          "draft_accepted": timings.get("draft_n_accepted"), "draft_n": timings.get("draft_n"),
                          "repack": server.repack, "correct": g.correct, "predicted": g.predicted, "text": text})  # fmt: skip
            print(f"{config} {i}/{len(todo)} {data['_seconds']:.1f}s correct={g.correct}", flush=True)
    finally:
        server.close()


def run_arbitrage(config: str, problems: list[Problem], out: Path, args: Any) -> None:
    path = out / f"{config}.jsonl"
    todo = [p for p in problems if p.id not in done_ids(path)]
    if not todo:
        return
    policy = "auto" if config == "auto" else "target"
    speculation = SpeculationConfig(adaptive=False, k_start=3, k_max=3) if config == "speculate" else None
    spec = RunSpec(draft=args.draft, target=args.target, policies=[policy], speculation=speculation,
                   reproducible=config == "target_reproducible")  # fmt: skip
    with Run(spec) as run:
        engine = run.engine(config=EngineConfig())
        engine.solve(todo[0].question[:120])  # warm-up, not recorded
        for i, problem in enumerate(todo, 1):
            t0 = time.perf_counter()
            trace = engine.solve(problem.question)
            seconds = time.perf_counter() - t0
            stats = [s.target.extra.get("speculation") for s in trace.steps if s.target is not None]
            spec_totals = {k: sum(int(s[k]) for s in stats if s) for k in ("rounds", "proposed", "accepted")}
            g = grade(trace.solution, problem.answer)
            append(path, {"id": problem.id, "seconds": seconds, "tokens": trace.usage["target"].generated_tokens,
                          "wall_latency_seconds": trace.wall_latency_seconds, "correct": g.correct, "predicted": g.predicted,
                          "speculation": spec_totals, "policy": trace.policy, "text": trace.solution})  # fmt: skip
            print(f"{config} {i}/{len(todo)} {seconds:.1f}s correct={g.correct} {spec_totals}", flush=True)


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


def write_summary(out: Path, summary: dict[str, Any], title: str) -> str:
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [f"# {title}", "", f"{summary['problems']} problems, every configuration on the same ones.", "",
             "| configuration | mean s / problem | tokens/s | correct | vs llama-server [95% CI] | vs arbitrage target [95% CI] | text as arbitrage target |",
             "| --- | ---: | ---: | ---: | --- | --- | ---: |"]  # fmt: skip

    def ci(v: Any) -> str:
        return f"{v[0]:.2f}x [{v[1]:.2f}, {v[2]:.2f}]" if v else "-"

    for config, e in summary["configs"].items():
        lines.append(f"| {config} | {e['mean_seconds']:.2f} | {e['tokens_per_second']:.1f} | {e['correct']} | "
                     f"{ci(e.get('speed_vs_server'))} | {ci(e.get('speed_vs_target'))} | "
                     f"{e.get('identical_to_target', '-')}/{summary['problems']} |")  # fmt: skip
    lines += ["", "Speed ratios: the reference's mean seconds over the configuration's (> 1: faster), paired "
              "bootstrap over problems; an interval containing 1 is no difference."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
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
        fig.savefig(out / "latency.png", dpi=120)
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
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations: {', '.join(sorted(unknown))} (known: {', '.join(CONFIGS)})")
    os.environ.setdefault("ARBITRAGE_THREADS", str(args.threads))
    name, problems = load_problems(args.dataset, None, offset=args.offset, limit=args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "run.json").write_text(json.dumps({**vars(args), "out": str(args.out), "binary": str(args.binary),
                                                   "configs": configs}, indent=1) + "\n")  # fmt: skip
    if any(c.startswith("server") for c in configs):
        args.binary = find_llama_server(args.binary)
        from arbitrage.backends.loader import GeneratorOptions, load_generator

        target = load_generator(args.target, GeneratorOptions())
        prompts = {p.id: target.render_prompt(p.question) for p in problems}  # type: ignore[attr-defined]
        target.close()
    for config in configs:
        if config.startswith("server"):
            run_server(config, problems, prompts, args.out, args)
        else:
            run_arbitrage(config, problems, args.out, args)
    print(
        write_summary(args.out, summarise(args.out, problems, configs), f"arbitrage vs llama-server: {name}")
    )


if __name__ == "__main__":
    main()
