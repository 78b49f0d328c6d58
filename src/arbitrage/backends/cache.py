"""A persistent step cache: replay a model's step for an identical (model, context, parameters).

Greedy decoding makes identical prefixes give identical steps, so sweeps over policies and thresholds
on the same problems regenerate the same steps again and again. :class:`CachingGenerator` wraps any
generator: on a hit it returns the stored :class:`StepOutput`, marked ``extra["replayed"] = True``; on a
miss it calls the model and stores the result.

What a replayed step costs is what a live run would have measured. When the model can replay
(:class:`~arbitrage.backends.base.Replayer`: llama.cpp), a hit prefills the context for real from the
model's current KV cache and leaves the step's tokens in the cache as decoding would have; the step is
charged that measured prefill (tokens and seconds) plus the decode seconds stored when it was first
generated (decoding the same tokens costs the same). The next live call then finds the cache exactly as
in a live run. Other backends replay the stored costs, including the prefill measured with the KV cache
of the step's first run (``extra["replay_prefill"]`` says which: ``"live"`` or ``"stored"``).
``benchmarks/replay_latency.py`` checks replayed against live runs.

Sampled steps are cached only with an explicit seed. The store is one SQLite file, safe for several
processes and threads.

Verification passes through: when the inner generator is a :class:`~arbitrage.backends.base.Verifier`,
so is the wrapper (``verify_step`` and ``continue_step`` call the inner model; nothing is cached).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from arbitrage.backends.base import (
    FinishReason,
    Generator,
    Replayer,
    StepContext,
    StepOutput,
    StepParams,
)

_VERIFIER_METHODS = ("verify_step", "continue_step")


class JsonTable:
    """One table of an SQLite file mapping a key to a JSON document; safe for threads and processes.

    Step caches and score caches (:mod:`arbitrage.prm.cache`) keep their tables in the same file.
    """

    def __init__(self, path: Path, table: str) -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        self.path = path
        self.table = table
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, output TEXT NOT NULL)")
        self._db.commit()

    @staticmethod
    def digest(payload: object) -> str:
        """A stable key for a JSON-serialisable payload."""
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()

    def get_json(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(f"SELECT output FROM {self.table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_json(self, key: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?)", (key, json.dumps(data)))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class StepCache(JsonTable):
    """SQLite-backed map from a step request's key to the step it produced."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "steps")

    @staticmethod
    def key(model_id: str, context: StepContext, params: StepParams) -> str:
        return JsonTable.digest([model_id, context.question, list(context.steps), dataclasses.asdict(params)])

    def get(self, key: str) -> StepOutput | None:
        data = self.get_json(key)
        if data is None:
            return None
        data["finish_reason"] = FinishReason(data["finish_reason"])
        data["token_logprobs"] = tuple(data["token_logprobs"])
        data["token_entropies"] = tuple(data["token_entropies"])
        data["extra"] = {**data.get("extra", {}), "replayed": True}
        return StepOutput(**data)

    def put(self, key: str, output: StepOutput) -> None:
        data = dataclasses.asdict(output)
        data["finish_reason"] = str(output.finish_reason)
        self.put_json(key, data)


class CachingGenerator:
    """A generator that replays cached steps and records new ones (see the module docstring)."""

    def __init__(self, inner: Generator, cache: StepCache, model_id: str | None = None) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.model_id = model_id or inner.name  # identifies the weights + prompt style in cache keys
        self.hits = 0
        self.misses = 0

    def generate_step(self, context: StepContext, params: StepParams) -> StepOutput:
        cacheable = params.temperature == 0 or params.seed is not None
        if not cacheable:
            return self.inner.generate_step(context, params)
        key = StepCache.key(self.model_id, context, params)
        hit = self.cache.get(key)
        if hit is not None:
            self.hits += 1
            return self._replay(context, params, hit)
        self.misses += 1
        output = self.inner.generate_step(context, params)
        self.cache.put(key, output)
        return output

    def _replay(self, context: StepContext, params: StepParams, hit: StepOutput) -> StepOutput:
        """``hit`` charged what a live call would have measured (see the module docstring)."""
        if not isinstance(self.inner, Replayer):
            return dataclasses.replace(hit, extra={**hit.extra, "replay_prefill": "stored"})
        prefill, seconds = self.inner.replay_step(context, params, hit)
        return dataclasses.replace(
            hit,
            prefill_tokens=prefill,
            prefill_seconds=seconds,
            extra={**hit.extra, "replay_prefill": "live", "stored_prefill_seconds": hit.prefill_seconds},
        )

    def __getattr__(self, name: str) -> Any:
        # verify_step / continue_step exist exactly when the inner generator has them, so that
        # isinstance(wrapper, Verifier) answers as for the inner generator; they are not cached.
        if name in _VERIFIER_METHODS:
            return getattr(self.inner, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def close(self) -> None:
        self.inner.close()
