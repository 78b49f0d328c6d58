"""Settings shared by every component: where user state lives and how llama.cpp is driven.

Environment variables (each declared once, here):

- ``ARBITRAGE_HOME``: folder for all user state (default ``~/.cache/arbitrage``).
- ``ARBITRAGE_MODEL_CACHE``: folder for fetched model files (default ``$ARBITRAGE_HOME/models``).
  Kept separate so tests can isolate ``ARBITRAGE_HOME`` yet share downloaded weights.
- ``ARBITRAGE_LLAMA_EXTRA_BUFTS``: ``auto`` (default), ``on`` or ``off``. llama.cpp's extra CPU buffer
  types (AMX / repacked weights) crash some virtual machines whose CPUs advertise AMX; ``auto`` probes
  each model once in a subprocess and remembers the verdict.
- ``ARBITRAGE_THREADS``: CPU threads for llama.cpp (default: all cores).
- ``ARBITRAGE_LLAMA_DETERMINISM``: ``off`` (default), ``auto``, ``exact`` or ``aligned``: whether
  llama.cpp evaluation is kept independent of what the KV cache held (``backends/llamacpp_eval.py``).
  ``off``, the serving mode, reuses every cached position as it was computed, as ``llama-server`` does:
  no token is evaluated twice, and a greedy step can depend on whether its context was decoded or
  prefilled (near-ties only). ``auto`` is the **reproducible** mode: it probes each model when it loads
  and uses ``exact`` where the build's numbers do not depend on batching, else ``aligned`` (canonical
  32-token chunks, re-evaluating decoded tokens at the next call: measured +24% latency on the default
  pair, 2-core CPU). ``arbitrage eval`` / ``sweep --reproducible`` select it.
- ``ARBITRAGE_LLAMA_FLASH_ATTN``: ``on`` (default) or ``off``: llama.cpp's flash attention. Measured on
  the default pair (2-core CPU): decode 42 vs 52 ms/token for the 1.5B, prefill no slower; with it, a
  batch of fewer than 8 tokens after the cache gives the same logits as decoding them one by one
  (below 256 cached tokens), which token-level speculation relies on for byte-identical output.
- ``ARBITRAGE_LLAMA_VERIFY``: ``batched`` (default) or ``sequential``: how llama.cpp verifies a step
  when its evaluation is batch-dependent (``aligned`` mode). Batched costs a fraction of decoding the
  step, but its greedy choices can differ from decoding's at near-ties, so a step continued from the
  agreed prefix may differ from the model's own step; sequential feeds the step token by token as
  decoding does (about the cost of decoding it) and makes prefix keeping byte-identical. In ``exact``
  mode verification is batched and exact.
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
    llama_determinism: Literal["auto", "exact", "aligned", "off"] = "off"  # ARBITRAGE_LLAMA_DETERMINISM
    llama_flash_attn: Literal["on", "off"] = "on"  # ARBITRAGE_LLAMA_FLASH_ATTN
    llama_verify: Literal["batched", "sequential"] = "batched"  # ARBITRAGE_LLAMA_VERIFY
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
