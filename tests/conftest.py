"""Shared fixtures: an isolated ARBITRAGE_HOME per test (the model cache and probe verdicts are shared)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REAL_HOME = Path(os.environ.get("ARBITRAGE_HOME", Path.home() / ".cache" / "arbitrage"))
MODEL_CACHE = Path(os.environ.get("ARBITRAGE_MODEL_CACHE", REAL_HOME / "models"))
SESSION_PROBES = REAL_HOME / "llama_probes.json"


@pytest.fixture(autouse=True)
def arbitrage_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point ARBITRAGE_HOME at a temp folder, keeping the shared model cache and probe verdicts."""
    home = tmp_path / "arbitrage_home"
    home.mkdir()
    verdicts = _read_verdicts(SESSION_PROBES)
    if verdicts:
        (home / "llama_probes.json").write_text(json.dumps(verdicts))
    monkeypatch.setenv("ARBITRAGE_HOME", str(home))
    monkeypatch.setenv("ARBITRAGE_MODEL_CACHE", str(MODEL_CACHE))
    monkeypatch.delenv("ARBITRAGE_LLAMA_EXTRA_BUFTS", raising=False)
    yield home
    probes = home / "llama_probes.json"
    if probes.is_file():  # keep new verdicts for later tests: a probe costs a model load
        merged = _read_verdicts(SESSION_PROBES)
        merged.update(_read_verdicts(probes))
        SESSION_PROBES.parent.mkdir(parents=True, exist_ok=True)
        tmp = SESSION_PROBES.with_name(f".{SESSION_PROBES.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, indent=1, sort_keys=True))
        tmp.replace(SESSION_PROBES)  # atomic: parallel test runs never see a half-written file


def _read_verdicts(path: Path) -> dict[str, bool]:
    try:
        return dict(json.loads(path.read_text())) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
