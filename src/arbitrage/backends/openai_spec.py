"""The ``openai:`` model spec, parsed (options in :mod:`arbitrage.backends.openai_http`), and the API key
it resolves to."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from arbitrage.backends.http_retry import RetryPolicy
from arbitrage.backends.spec_options import SpecOptions
from arbitrage.errors import ConfigError
from arbitrage.settings import Settings

OPTION_NAMES = (
    "template", "timeout", "connect_timeout", "retries", "backoff", "max_backoff", "logprobs",
    "api_key_env", "check", "name", "x_FIELD",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class OpenAISpec:
    """A parsed ``openai:`` spec."""

    base_url: str  # API root, e.g. http://127.0.0.1:8000/v1
    model: str | None  # served model name; None = the server's only model
    template: str = "chatml"
    timeout: float = 120.0  # read timeout (seconds between streamed chunks)
    connect_timeout: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    logprobs: str = "auto"  # auto | on | off
    api_key_env: str | None = None
    check: bool = True
    name: str | None = None
    extra_body: dict[str, object] = field(default_factory=dict)  # x_FIELD options

    @classmethod
    def parse(cls, rest: str) -> OpenAISpec:
        """Parse what follows ``openai:`` (the URL contains ``:``; the model follows the first ``#``)."""
        spec = f"openai:{rest}"
        url, hash_mark, fragment = rest.strip().partition("#")
        model, _, option_text = fragment.partition("?")
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
            raise ConfigError(
                f"Model spec {spec!r} needs an http(s) base URL, e.g. openai:http://127.0.0.1:8000/v1#MODEL"
            )
        if hash_mark and not model.strip() and not option_text:
            raise ConfigError(f"Model spec {spec!r} has an empty model name after '#'")
        opts = SpecOptions.parse(spec, option_text)
        parsed = cls(
            base_url=url,
            model=model.strip() or None,
            template=opts.text("template", "chatml"),
            timeout=opts.number("timeout", 120.0, minimum=0.001),
            connect_timeout=opts.number("connect_timeout", 5.0, minimum=0.001),
            retry=RetryPolicy(
                retries=opts.integer("retries", 3, minimum=0),
                backoff=opts.number("backoff", 0.5, minimum=0),
                max_backoff=opts.number("max_backoff", 8.0, minimum=0),
            ),
            logprobs=opts.choice("logprobs", "auto", ("auto", "on", "off")),
            api_key_env=opts.optional_text("api_key_env"),
            check=opts.flag("check", True),
            name=opts.optional_text("name"),
            extra_body=opts.prefixed("x_"),
        )
        opts.finish(OPTION_NAMES)
        return parsed


def resolve_api_key(spec: OpenAISpec, settings: Settings) -> str:
    """The key to send: the spec's variable, ARBITRAGE_OPENAI_API_KEY, OPENAI_API_KEY, or "EMPTY"."""
    if spec.api_key_env:
        value = os.environ.get(spec.api_key_env)
        if not value:
            raise ConfigError(f"api_key_env={spec.api_key_env}: that environment variable is not set")
        return value
    if settings.openai_api_key is not None:
        return settings.openai_api_key.get_secret_value()
    return os.environ.get("OPENAI_API_KEY") or "EMPTY"
