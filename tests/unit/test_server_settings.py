"""Server settings: precedence of flags, environment and config file; unknown keys and bad values rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.errors import ConfigError
from arbitrage.server.settings import ServerSettings, load_server_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ARBITRAGE_SERVE_") or name == "ARBITRAGE_API_KEY":
            monkeypatch.delenv(name)


def test_defaults_bind_loopback_without_a_key() -> None:
    settings = load_server_settings()
    assert settings.host == "127.0.0.1"
    assert settings.api_key is None
    assert settings.served_policies == ("auto",)  # the cost-aware default (issue 26)


def test_precedence_overrides_then_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('port = 9001\nmax_queue = 3\nmodel_id = "from-file"\n[policy_options]\np = 0.25\n')
    monkeypatch.setenv("ARBITRAGE_SERVE_PORT", "9002")
    settings = load_server_settings(config, model_id="from-flag")
    assert settings.port == 9002  # env beats file
    assert settings.max_queue == 3  # file beats default
    assert settings.model_id == "from-flag"  # flag beats all
    assert settings.policy_options == {"p": 0.25}


def test_json_config_and_api_key_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"api_key": "from-file", "allowed_policies": ["draft"]}))
    assert load_server_settings(config).api_key.get_secret_value() == "from-file"  # type: ignore[union-attr]
    monkeypatch.setenv("ARBITRAGE_API_KEY", "from-env")
    settings = load_server_settings(config)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "from-env"
    assert settings.served_policies == ("auto", "draft")
    assert "from-env" not in repr(settings)  # the key is a secret


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("bogus = 1\n", "bogus: unknown setting"),
        ("max_concurrency = 0\n", "max_concurrency"),
        ("max_steps = 500\n", "max_steps (500) is above max_steps_limit (100)"),
        ('user_template = "no placeholder"\n', "must contain {question}"),
        ("[param_limits.p]\nmin = 1\nmax = 0\n", "min 1.0 is above max 0.0"),
        ('context_messages = "sometimes"\n', "context_messages"),
        ("port = [\n", "Cannot parse config file"),
    ],
)
def test_bad_config_files_are_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_server_settings(config)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="Config file not found"):
        load_server_settings(Path("/nonexistent/serve.toml"))


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_server_settings(max_queues=3)


def test_settings_are_frozen() -> None:
    settings = ServerSettings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError subclass
        settings.port = 1  # type: ignore[misc]
