"""`arbitrage serve` as typed, with a real saved router and with RSD over a real PRM, driven over HTTP by
the official openai client.

The command runs in-process: its model loader returns scripted generators (no weights), and
``uvicorn.run`` is replaced by a real uvicorn server on a free loopback port that lives while the
client talks to it. Everything else is the code a user runs: flags, settings, the run context, the
router folder committed in ``data/routers/features``, the arithmetic PRM (``--prm arith``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn
from typer.testing import CliRunner

from arbitrage.backends.loader import GeneratorOptions
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.cli import common
from arbitrage.cli.main import app
from arbitrage.server import BackgroundServer

ROUTER = Path(__file__).resolve().parents[2] / "data" / "routers" / "features"
DRAFT = ["We have 3 apples and buy 4 more.", "So 3 + 4 = 8 apples.", "The answer is \\boxed{8}."]
TARGET = ["Start with 3 apples, add 4.", "So 3 + 4 = 7 apples.", "The answer is \\boxed{7}."]
Exercise = Callable[[openai.OpenAI], None]


def serve(monkeypatch: pytest.MonkeyPatch, args: list[str], exercise: Exercise) -> list[ScriptedGenerator]:
    """Run `arbitrage serve ARGS` until ``exercise(client)`` is done; return the models it loaded."""
    loaded: list[ScriptedGenerator] = []

    def load_model(spec: str, options: GeneratorOptions) -> ScriptedGenerator:
        model = ScriptedGenerator(spec, DRAFT if spec == "d" else TARGET)
        loaded.append(model)
        return model

    def run(app: Any, **_: Any) -> None:
        with BackgroundServer(app) as server:
            exercise(openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=60))

    monkeypatch.setattr(common, "load_model", load_model)
    monkeypatch.setattr(uvicorn, "run", run)
    result = CliRunner().invoke(app, ["serve", "--draft", "d", "--target", "t", "--port", "0", *args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return loaded


def steps_of(completion: Any) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = completion.model_extra["arbitrage"]["steps"]
    return steps


def ask(client: openai.OpenAI, **extra: Any) -> Any:
    return client.chat.completions.create(
        model="arbitrage",
        messages=[{"role": "user", "content": "I have 3 apples and buy 4. How many?"}],
        extra_body={"arbitrage": extra} if extra else None,
    )


def test_serve_a_saved_router_with_the_router_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def exercise(client: openai.OpenAI) -> None:
        seen["model"] = client.models.retrieve("arbitrage").model_extra
        seen["default"] = ask(client)
        seen["strict"] = ask(client, policy_params={"tau": 1.0})  # ŷ > 1 never holds: draft only

    models = serve(
        monkeypatch, ["--policy", "router", "--router", str(ROUTER), "-o", "target_rate=0.5"], exercise
    )
    policy = seen["model"]["arbitrage"]["policy"]
    assert policy.startswith("router(features,tau=") and policy.endswith(",rate=0.5)")
    steps = steps_of(seen["default"])
    assert [s["text"] for s in steps] == [
        TARGET[i] if s["role"] == "target" else DRAFT[i] for i, s in enumerate(steps)
    ]
    for step in steps:
        decision = step["decision"]
        assert 0.0 <= decision["score"] <= 1.0
        assert (step["role"] == "target") == (decision["score"] > decision["threshold"])
    assert [s["role"] for s in steps_of(seen["strict"])] == ["draft"] * len(DRAFT)
    assert seen["strict"].choices[0].message.content.endswith("\\boxed{8}.")
    assert all(m.closed for m in models)  # the run closed the models when the server stopped


def test_serve_without_a_policy_serves_auto_the_target_writing_every_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def exercise(client: openai.OpenAI) -> None:
        seen["model"] = client.models.retrieve("arbitrage").model_extra
        seen["default"] = ask(client)

    serve(monkeypatch, [], exercise)
    assert seen["model"]["arbitrage"]["policy"] == "auto(quality=1 -> target)"
    steps = steps_of(seen["default"])
    assert steps and all(s["role"] == "target" for s in steps)
    # scripted models cannot speculate: auto says so and runs the target plainly
    assert "speculation off" in steps[0]["decision"]["reason"]


def test_serve_verify_at_the_default_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def exercise(client: openai.OpenAI) -> None:
        seen["model"] = client.models.retrieve("arbitrage").model_extra
        seen["default"] = ask(client)
        seen["lenient"] = ask(client, policy_params={"threshold": 15.0})  # a score above 15: never

    models = serve(monkeypatch, ["--policy", "verify"], exercise)
    policy = seen["model"]["arbitrage"]["policy"]
    assert policy.startswith("verify(target_nll,tau=") and policy.endswith(",rate=0.6)")
    target = next(m for m in models if m.name == "t")
    steps = steps_of(seen["default"])
    assert len(target.verifications) >= len(steps)  # the target verified every draft step
    for step in steps:
        decision = step["decision"]
        assert (step["role"] == "target") == (decision["score"] > decision["threshold"])
    assert [s["role"] for s in steps_of(seen["lenient"])] == ["draft"] * len(DRAFT)


def test_serve_rsd_with_a_prm_flag_under_concurrent_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Any] = []
    errors: list[BaseException] = []

    def one(client: openai.OpenAI) -> None:
        try:
            answers.append(ask(client))
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    def exercise(client: openai.OpenAI) -> None:
        threads = [threading.Thread(target=one, args=(client,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    serve(
        monkeypatch,
        ["--policy", "rsd", "--prm", "arith", "-o", "threshold=0.5", "--max-concurrency", "3"],
        exercise,
    )
    assert errors == [] and len(answers) == 6
    for completion in answers:
        steps = steps_of(completion)
        roles = [s["role"] for s in steps]
        # the PRM finds "3 + 4 = 8" wrong: that step (and only that one) goes to the target
        assert roles == ["draft", "target", "draft"], roles
        assert steps[1]["decision"]["draft_reward"] < 0.5 <= steps[0]["decision"]["draft_reward"]
        assert completion.model_extra["arbitrage"]["policy"].startswith("rsd(t=0.5, prm=")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "router"], "needs policy_options.tau τ"),
        (["--policy", "router", "--router", str(ROUTER)], "needs policy_options.tau τ"),
        (["--policy", "router", "--router", str(ROUTER), "-o", "tau=2"], "policy_options.tau must be within"),
        (["--policy", "random", "--p", "2"], "--p must be within [0, 1]"),
        (["--policy", "random", "--router", str(ROUTER)], "Unknown policy option 'path'"),
    ],
)
def test_serve_names_bad_policy_options_by_flag_or_field(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--port", "0", *args])
    assert result.exit_code != 0 and message in str(result.exception), repr(result.exception)


def test_create_app_loads_the_prm_once_at_startup_and_closes_it() -> None:
    from fastapi.testclient import TestClient

    from arbitrage.prm.registry import load_scorer
    from arbitrage.server import create_app
    from arbitrage.server.settings import ServerSettings
    from tests.unit.server_fakes import scripted_pair

    loaded: list[Any] = []

    def scorer_loader(settings: ServerSettings) -> Any:
        scorer = load_scorer(settings.prm)
        loaded.append(scorer)
        return scorer

    settings = ServerSettings(
        draft="scripted", target="scripted", policy="rsd", prm="arith", policy_options={"threshold": 0.5}
    )
    app = create_app(settings, generators=scripted_pair(), scorer_loader=scorer_loader)
    assert loaded == []  # not at creation: at startup
    closed: list[bool] = []
    with TestClient(app) as client:
        [scorer] = loaded
        scorer.close = lambda: closed.append(True)  # type: ignore[method-assign]
        for threshold in (0.5, 0.9):
            body = client.post(
                "/v1/chat/completions",
                json={"model": "arbitrage", "messages": [{"role": "user", "content": "2+2?"}],
                      "arbitrage": {"policy_params": {"threshold": threshold}}},
            ).json()  # fmt: skip
            assert body["arbitrage"]["policy"].startswith(f"rsd(t={threshold:g}, prm=")
        assert client.get("/health").json()["policy"].startswith("rsd(t=0.5")
    assert len(loaded) == 1 and closed == [True]
