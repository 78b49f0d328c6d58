"""The llama.cpp server wrapper's arguments: llama_cpp.server's own, with safer defaults."""

from __future__ import annotations

import pytest

from arbitrage.backends.llamacpp_server import _parse, main
from arbitrage.errors import ArbitrageError


def test_defaults_differ_where_they_matter() -> None:
    server, models = _parse(["--model", "smollm2-135m", "--port", "8123"])
    assert server.port == 8123 and server.interrupt_requests is False
    assert len(models) == 1 and models[0].model == "smollm2-135m" and models[0].logits_all is False


def test_explicit_values_are_kept() -> None:
    server, models = _parse(["--model", "x.gguf", "--logits_all", "true", "--interrupt_requests", "true"])
    assert server.interrupt_requests is True and models[0].logits_all is True


def test_model_is_required() -> None:
    with pytest.raises(ArbitrageError, match="--model is required"):
        _parse([])


def test_unknown_model_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "no-such-model"]) != 0
    assert capsys.readouterr().err.strip().startswith("error: Unknown model 'no-such-model'")
