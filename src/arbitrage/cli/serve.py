"""``arbitrage serve``: step-level speculative reasoning behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def _parse_option(raw: str) -> tuple[str, str]:
    from arbitrage.errors import ConfigError

    key, sep, value = raw.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--policy-option expects KEY=VALUE, got {raw!r}")
    return key.strip(), value.strip()


def serve(
    draft: Annotated[
        str | None, typer.Option(help="Draft model: a named model, a .gguf path, or a backend spec.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Target model (same forms as --draft).")] = None,
    policy: Annotated[
        str | None, typer.Option(help="Routing policy served under the model id (default: auto).")
    ] = None,
    p: Annotated[float | None, typer.Option(help="random: probability of escalating a step.")] = None,
    router: Annotated[
        Path | None, typer.Option(help="Trained router for the router policy (policy option 'path').")
    ] = None,
    prm: Annotated[
        str | None,
        typer.Option(
            help="rsd, oracle: process reward model spec, loaded once (default: the measured best)."
        ),
    ] = None,
    policy_option: Annotated[
        list[str] | None,
        typer.Option("--policy-option", "-o", help="Any policy option as KEY=VALUE (repeatable)."),
    ] = None,
    allow_policy: Annotated[
        list[str] | None,
        typer.Option("--allow-policy", help="Another policy a request may choose (repeatable)."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default 127.0.0.1: loopback only).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default 8000; 0: any free port).")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="Require 'Authorization: Bearer KEY' (or set ARBITRAGE_API_KEY)."),
    ] = None,
    model_id: Annotated[
        str | None, typer.Option(help="Model id clients ask for (default arbitrage).")
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Solves running at once (default 1).")] = None,
    max_queue: Annotated[
        int | None, typer.Option(help="Requests waiting for a slot; beyond it 429 (default 8).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Per-request timeout in seconds, queue included (default 600).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Default step limit of a request (40).")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Default solution token limit (2048).")] = None,
    max_step_tokens: Annotated[int | None, typer.Option(help="Default cap on tokens per step (256).")] = None,
    n_ctx: Annotated[int | None, typer.Option(help="Context window of local models (4096).")] = None,
    config: Annotated[
        Path | None, typer.Option(help="Settings file (TOML or JSON) with the same keys as the flags.")
    ] = None,
) -> None:
    """Serve arbitrage as an OpenAI-compatible endpoint (/v1/chat/completions, /v1/completions)."""
    import logging

    import uvicorn

    from arbitrage.cli.common import open_run
    from arbitrage.cli.options import flag
    from arbitrage.server import ServerPlan, create_app, load_server_settings
    from arbitrage.server.jobs import settings_field

    overrides = {
        "draft": draft, "target": target, "policy": policy, "allowed_policies": allow_policy or None,
        "prm": prm, "host": host, "port": port, "api_key": api_key, "model_id": model_id,
        "max_concurrency": max_concurrency, "max_queue": max_queue, "request_timeout": timeout,
        "max_steps": max_steps, "max_tokens": max_tokens, "max_step_tokens": max_step_tokens, "n_ctx": n_ctx,
    }  # fmt: skip
    flags = {"p": p, "path": str(router) if router is not None else None}  # policy options with a flag
    options: dict[str, Any] = dict(_parse_option(raw) for raw in policy_option or [])
    options.update({k: v for k, v in flags.items() if v is not None})  # flags win over -o, env and file
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = load_server_settings(config, extra_policy_options=options, **given)
    # fail on a bad policy or option before any model loads; options given as flags are named as flags
    plan = ServerPlan.resolve(settings, lambda n: flag(n) if flags.get(n) is not None else settings_field(n))
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        logging.getLogger("arbitrage.serve").warning(
            "binding %s without an API key: anyone who can reach it can use it", settings.host
        )
    with open_run(plan.run_spec()) as run:
        app = create_app(plan, run=run)
        typer.echo(
            f"serving {settings.model_id} (draft {run.draft.name}, target {run.target.name}, "
            f"policy {run.policy.name}) at http://{settings.host}:{settings.port}/v1",
            err=True,
        )
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=10
        )
