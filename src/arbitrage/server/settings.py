"""Settings of ``arbitrage serve``: one pydantic model for flags, environment variables and a config file.

Precedence, highest first: command-line flags (or keyword arguments to :func:`load_server_settings`),
environment variables, the optional config file (TOML or JSON, same keys as the fields below), the
defaults. Unknown keys are rejected everywhere.

Environment variables (each declared once, here):

- ``ARBITRAGE_SERVE_<FIELD>`` for every field below, e.g. ``ARBITRAGE_SERVE_PORT=8080``,
  ``ARBITRAGE_SERVE_MAX_QUEUE=16``; dicts and lists as JSON
  (``ARBITRAGE_SERVE_POLICY_OPTIONS='{"p": 0.3}'``).
- ``ARBITRAGE_API_KEY``: the API key (field ``api_key``); when set, every ``/v1`` route and ``/metrics``
  require ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from arbitrage.errors import ConfigError
from arbitrage.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from arbitrage.prm.registry import DEFAULT_PRM
from arbitrage.prompts import DEFAULT_SEPARATOR, DEFAULT_SYSTEM, DEFAULT_USER_TEMPLATE

ContextMessages = Literal["fold", "ignore", "reject"]


class ParamLimit(BaseModel):
    """Closed range a request may set one numeric policy parameter to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> ParamLimit:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


# Policy parameters a request may override by default, and their ranges. A name applies to a request
# only when its policy has an option of that name (arbitrage.policies.options), so the defaults can name
# parameters of policies other than the served one.
DEFAULT_PARAM_LIMITS: dict[str, ParamLimit] = {
    "p": ParamLimit(min=0.0, max=1.0),  # random: escalation probability
    # rsd: reward threshold (in [0, 1], checked by the policy); verify: τ in its score's units
    "threshold": ParamLimit(min=-20.0, max=20.0),
    "tau": ParamLimit(min=-1.0, max=1.0),  # oracle/router: advantage threshold τ
    "target_rate": ParamLimit(min=0.0, max=1.0),  # router: target-call budget
}


class ServerSettings(BaseSettings):
    """Everything ``arbitrage serve`` needs: models, policy, request limits, queueing, binding, auth."""

    model_config = SettingsConfigDict(
        env_prefix="ARBITRAGE_SERVE_", extra="forbid", populate_by_name=True, frozen=True
    )

    # models and routing
    draft: str = DEFAULT_DRAFT  # draft model spec (named model, .gguf path, backend spec)
    target: str = DEFAULT_TARGET  # target model spec
    policy: str = "auto"  # routing policy served under ``model_id`` (the cost-aware default, see README)
    policy_options: dict[str, Any] = Field(default_factory=dict)  # served policies' options, e.g. {"p": 0.3}
    prm: str = DEFAULT_PRM  # step scorer (PRM) spec; loaded once at startup iff rsd or oracle is served
    allowed_policies: list[str] = Field(default_factory=list)  # other policies a request may pick
    param_limits: dict[str, ParamLimit] = Field(default_factory=lambda: dict(DEFAULT_PARAM_LIMITS))
    model_id: str = Field(default="arbitrage", min_length=1)  # the id clients put in ``model``
    n_ctx: int = Field(default=4096, ge=256)  # context window of local models
    seed: int = 0  # default sampling seed (also the random policy's, unless policy_options sets one)

    # prompt (shared by draft and target; one per server, since the models format it at load time)
    system_prompt: str | None = DEFAULT_SYSTEM
    user_template: str = DEFAULT_USER_TEMPLATE  # must contain {question}
    context_messages: ContextMessages = "fold"  # earlier chat messages: fold into the question / drop / 400

    # per-request defaults and the most a request may ask for
    max_steps: int = Field(default=40, ge=1)
    max_steps_limit: int = Field(default=100, ge=1)
    max_tokens: int = Field(default=2048, ge=1)  # solution tokens (accepted steps)
    max_tokens_limit: int = Field(default=4096, ge=1)
    max_step_tokens: int = Field(default=256, ge=1)
    max_step_tokens_limit: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)  # 0 = greedy
    separator: str = Field(default=DEFAULT_SEPARATOR, min_length=1)  # step separator
    stop_on_boxed: bool = True  # end the answer at the first step stating a \boxed{} answer

    # queueing and time
    max_concurrency: int = Field(default=1, ge=1)  # solves running at once (each in a worker thread)
    max_queue: int = Field(default=8, ge=0)  # admitted requests waiting for a slot; beyond: 429
    request_timeout: float = Field(default=600.0, gt=0)  # seconds from arrival (queue wait included)
    max_request_bytes: int = Field(default=1_000_000, ge=1024)  # larger bodies get 413
    sse_keepalive: float = Field(default=15.0, ge=0)  # seconds between SSE comments while a step runs; 0: off

    # binding and auth
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)  # 0: any free port
    api_key: SecretStr | None = Field(default=None, validation_alias="ARBITRAGE_API_KEY")

    @model_validator(mode="after")
    def _limits_cover_defaults(self) -> ServerSettings:
        for name in ("max_steps", "max_tokens", "max_step_tokens"):
            default, limit = getattr(self, name), getattr(self, f"{name}_limit")
            if default > limit:
                raise ValueError(f"{name} ({default}) is above {name}_limit ({limit})")
        if "{question}" not in self.user_template:
            raise ValueError("user_template must contain {question}")
        if self.api_key is not None and not self.api_key.get_secret_value():
            raise ValueError("api_key must not be empty")
        return self

    @property
    def served_policies(self) -> tuple[str, ...]:
        """The configured policy first, then the others a request may choose."""
        return (self.policy, *(p for p in self.allowed_policies if p != self.policy))


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot parse config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a table/object of settings")
    return data


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem, ``field: message``, joined with '; ' (for users, not developers)."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        parts.append(f"{prefix}{where}: {message}" if where else message)
    return "; ".join(parts)


def load_server_settings(
    config_file: Path | None = None,
    *,
    extra_policy_options: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> ServerSettings:
    """Settings from overrides > environment > config file > defaults (see the module docstring);
    ``extra_policy_options`` (e.g. from flags) add to, and win over, the ``policy_options`` so found."""
    try:
        from_env = ServerSettings()
        file_values = _read_config_file(config_file) if config_file is not None else {}
        values = {k: v for k, v in file_values.items() if k not in from_env.model_fields_set}
        values.update(overrides)
        if extra_policy_options:
            found = values.get("policy_options", from_env.policy_options)
            values["policy_options"] = {**found, **extra_policy_options}
        return ServerSettings(**values)
    except ValidationError as exc:
        raise ConfigError(f"Invalid server settings: {describe_validation_error(exc)}") from None
