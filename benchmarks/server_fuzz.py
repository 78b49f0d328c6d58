"""Property-based fuzz of `arbitrage serve`, run long: hostile HTTP input against a live server on 127.0.0.1.

The cases, the live server and the property are in ``benchmarks/server_fuzz_cases.py`` (hypothesis
strategies; the answers checked against :mod:`arbitrage.server.schemas`), and the test suite checks the
property on 300 of them (``tests/integration/test_server_fuzz.py``), where hypothesis stops at the first
failure and shrinks it. What this script adds: a long run that does not stop, but counts the answers per
endpoint, family and status and keeps the first example of every distinct problem (a *finding*), polls
the server every 25 cases, checks it is still well at the end, and writes ``OUT/results.json``
(settings, counts, findings) and ``OUT/status_codes.png``, and prints a summary. Bounded in count
(``--cases``) and time (``--seconds``; cases past it are not sent).

    ARBITRAGE_THREADS=1 python benchmarks/server_fuzz.py --cases 2000 --seconds 600
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from server_fuzz_cases import (  # beside this script
    CLIENT_TIMEOUT,
    SERVER_SETTINGS,
    Case,
    Result,
    ServerProcess,
    cases,
    liveness_problems,
    send,
    serve,
)

ROOT = Path(__file__).resolve().parents[1]
POLL_EVERY = 25  # cases between liveness checks


# -- the run -------------------------------------------------------------------------------------------


class ServerExited(Exception):
    """The server process ended during the fuzz."""


@dataclass
class FuzzReport:
    """Counts and findings of one fuzz run."""

    cases: int = 0  # cases sent
    seconds: float = 0.0  # wall time of the run
    by_endpoint: dict[str, Counter[str]] = field(default_factory=dict)  # "POST /v1/..." → status → count
    by_family: dict[str, Counter[str]] = field(default_factory=dict)  # family → status → count
    findings: list[dict[str, Any]] = field(default_factory=list)  # one per distinct problem, first example
    finding_counts: Counter[str] = field(default_factory=Counter)  # problem signature → cases
    liveness: list[str] = field(default_factory=list)  # problems of the liveness checks

    def observe(self, case: Case, result: Result) -> None:
        self.cases += 1
        status = str(result.status) if result.status is not None else "none"
        self.by_endpoint.setdefault(case.endpoint, Counter())[status] += 1
        self.by_family.setdefault(case.family, Counter())[status] += 1
        for problem in result.problems:
            signature = f"{case.endpoint} {status}: {problem.split(':')[0]}"
            self.finding_counts[signature] += 1
            if self.finding_counts[signature] == 1:
                self.findings.append(
                    {
                        "signature": signature,
                        "problem": problem,
                        "family": case.family,
                        "request": case.describe(),
                        "response": result.excerpt,
                    }
                )

    @property
    def ok(self) -> bool:
        return not self.findings and not self.liveness

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["finding_counts"] = dict(self.finding_counts)
        data["by_endpoint"] = {k: dict(sorted(v.items())) for k, v in sorted(self.by_endpoint.items())}
        data["by_family"] = {k: dict(sorted(v.items())) for k, v in sorted(self.by_family.items())}
        return data

    def summary(self) -> str:
        lines = [f"{self.cases} cases in {self.seconds:.0f} s"]
        for name, table in (("endpoint", self.by_endpoint), ("family", self.by_family)):
            lines.append(f"by {name}:")
            for key, counts in sorted(table.items()):
                total = sum(counts.values())
                lines.append(
                    f"  {key:32s} {total:5d}  " + "  ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
                )
        lines.append(f"findings: {len(self.findings)} distinct" + (" (none)" if not self.findings else ""))
        for finding in self.findings:
            count = self.finding_counts[finding["signature"]]
            lines.append(f"  [{count} cases] {finding['problem']}\n      e.g. {finding['request'][:300]}")
        lines += [f"  liveness: {problem}" for problem in self.liveness]
        return "\n".join(lines)


def run_fuzz(
    server: ServerProcess,
    *,
    max_cases: int,
    seconds: float,
    seed: int | None = None,
    derandomize: bool = False,
    progress: Callable[[FuzzReport], None] | None = None,
) -> FuzzReport:
    """Send up to ``max_cases`` generated cases within ``seconds``, then check the server is still well."""
    report = FuzzReport()
    start = time.monotonic()
    end = start + seconds
    timeout = httpx.Timeout(CLIENT_TIMEOUT, connect=10.0)
    with httpx.Client(base_url=server.url, timeout=timeout) as client:

        @settings(
            max_examples=max_cases,
            deadline=None,
            database=None,
            derandomize=derandomize,
            phases=[Phase.generate],  # findings are collected, not raised: nothing to shrink
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )
        @given(case=cases())
        def fuzz(case: Case) -> None:
            if time.monotonic() > end or report.cases >= max_cases:
                return
            report.observe(case, send(client, case))
            if report.cases % POLL_EVERY == 0:
                if not server.alive():
                    report.liveness.append(f"the server exited after case {report.cases}")
                    raise ServerExited
                if progress:
                    progress(report)

        if seed is not None:
            fuzz = hypothesis_seed(seed)(fuzz)
        with contextlib.suppress(ServerExited):  # reported in liveness
            fuzz()
        report.seconds = time.monotonic() - start
        report.liveness += liveness_problems(server, client)
    log = server.log.read_text(errors="replace")
    if "Traceback" in log:
        tail = log[log.index("Traceback") :][:1500]
        report.liveness.append(f"the server log has a traceback:\n{tail}")
    return report


# -- the benchmark -------------------------------------------------------------------------------------


def plot(report: FuzzReport, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    endpoints = sorted(report.by_endpoint)
    statuses = sorted({s for counts in report.by_endpoint.values() for s in counts})
    fig, ax = plt.subplots(figsize=(11, 5.5))
    left = [0] * len(endpoints)
    colors = plt.get_cmap("tab20")
    for i, status in enumerate(statuses):
        values = [report.by_endpoint[e].get(status, 0) for e in endpoints]
        ax.barh(endpoints, values, left=left, label=status, color=colors(i % 20))
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("cases")
    ax.set_title(title, fontsize=10)
    ax.legend(title="HTTP status", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=2000, help="most cases to send")
    ap.add_argument(
        "--seconds", type=float, default=600, help="time budget of the fuzz (cases past it are not sent)"
    )
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    ap.add_argument("--draft", default="smollm2-135m")
    ap.add_argument("--target", default="smollm2-135m")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "server_fuzz")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ARBITRAGE_THREADS": os.environ.get("ARBITRAGE_THREADS", "1")}
    started = time.time()
    with (
        tempfile.TemporaryDirectory(prefix="server_fuzz_") as workdir,
        serve(Path(workdir), draft=args.draft, target=args.target, env=env) as server,
    ):

        def progress(report: FuzzReport) -> None:
            print(f"  {report.cases} cases, {len(report.findings)} findings", flush=True)

        report = run_fuzz(
            server, max_cases=args.cases, seconds=args.seconds, seed=args.seed, progress=progress
        )
    results = {
        "benchmark": "server_fuzz",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "config": {
            "cases": args.cases,
            "seconds": args.seconds,
            "seed": args.seed,
            "draft": args.draft,
            "target": args.target,
            "threads": env["ARBITRAGE_THREADS"],
            "server_settings": SERVER_SETTINGS,
            "client_timeout_s": CLIENT_TIMEOUT,
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "ok": report.ok,
        **report.to_dict(),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    title = (
        f"arbitrage serve under fuzz: {report.cases} cases in {report.seconds:.0f} s, "
        f"{len(report.findings)} findings ({args.draft} / {args.target})"
    )
    plot(report, args.out / "status_codes.png", title)
    print(report.summary())
    print(f"wrote {args.out / 'results.json'} and {args.out / 'status_codes.png'}")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
