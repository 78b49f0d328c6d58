"""Settings shared by every component: where user state lives and how llama.cpp is driven.

Environment variables (each declared once, here):

- ``ARBITRAGE_HOME``: folder for all user state (default ``~/.cache/arbitrage``).
- ``ARBITRAGE_MODEL_CACHE``: folder for fetched model files (default ``$ARBITRAGE_HOME/models``).
  Kept separate so tests can isolate ``ARBITRAGE_HOME`` yet share downloaded weights.
- ``ARBITRAGE_LLAMA_EXTRA_BUFTS``: ``auto`` (default), ``on`` or ``off``. llama.cpp's extra CPU buffer
  types (AMX / repacked weights) crash some virtual machines whose CPUs advertise AMX; ``auto`` probes
  each model once in a subprocess and remembers the verdict.
- ``ARBITRAGE_THREADS``: CPU threads for llama.cpp (default: all cores).
- ``ARBITRAGE_LLAMA_DETERMINISM``: ``auto`` (default), ``exact``, ``aligned`` or ``off``: how llama.cpp
  evaluation is kept independent of what the KV cache held (``backends/llamacpp_eval.py``). ``auto``
  probes each model when it loads: ``exact`` where the build's numbers do not depend on batching,
  else ``aligned`` (canonical 32-token chunks, re-evaluating decoded tokens at the next call);
  ``off`` reuses any cached prefix (fastest, history-dependent).
- ``ARBITRAGE_DATA_DIR``: folder of the named datasets (``gsm8k_test.jsonl``, ...; default
  ``shared/datasets`` beside the project checkout; see ``evaluation.datasets.default_data_dir``).
- ``ARBITRAGE_OPENAI_API_KEY``: API key sent to OpenAI-compatible servers (``openai:URL#MODEL`` specs);
  when unset, ``OPENAI_API_KEY`` is used, and when neither is set the placeholder ``EMPTY`` (servers
  started without a key accept anything). A spec option ``api_key_env=NAME`` reads another variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide paths and llama.cpp knobs, read from ``ARBITRAGE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ARBITRAGE_", extra="forbid")

    home: Path = Field(default_factory=lambda: Path.home() / ".cache" / "arbitrage")
    model_cache: Path | None = None
    llama_extra_bufts: Literal["auto", "on", "off"] = "auto"
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    llama_determinism: Literal["auto", "exact", "aligned", "off"] = "auto"  # ARBITRAGE_LLAMA_DETERMINISM
    openai_api_key: SecretStr | None = None  # see ARBITRAGE_OPENAI_API_KEY above
    data_dir: Path | None = None  # see ARBITRAGE_DATA_DIR above (None: the default folder)

    @property
    def models_dir(self) -> Path:
        """Folder holding assembled model files."""
        return self.model_cache if self.model_cache is not None else self.home / "models"

    @property
    def probes_file(self) -> Path:
        """JSON file remembering the llama.cpp extra-buffer-type probe verdicts."""
        return self.home / "llama_probes.json"


def load_settings() -> Settings:
    """Read the settings from the environment (a fresh object each call: no global state)."""
    return Settings()
