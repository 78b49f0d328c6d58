"""A persistent step cache: replay a model's step for an identical (model, context, parameters).

Greedy decoding makes identical prefixes give identical steps, so sweeps over policies and thresholds
on the same problems regenerate the same steps again and again. :class:`CachingGenerator` wraps any
generator: on a hit it returns the stored :class:`StepOutput` -- including the prefill/decode seconds
measured when it was generated -- marked ``extra["replayed"] = True``; on a miss it calls the model
and stores the result. Latency figures built from replayed steps are therefore sums of measured costs,
not new measurements; reports say which were replayed. (A replayed step's prefill cost is the one
measured with the KV-cache state of its original run.)

Sampled steps are cached only with an explicit seed. The store is one SQLite file, safe for several
processes and threads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from arbitrage.backends.base import FinishReason, Generator, StepContext, StepOutput, StepParams


class StepCache:
    """SQLite-backed map from a step request's key to the step it produced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS steps (key TEXT PRIMARY KEY, output TEXT NOT NULL)")
        self._db.commit()

    @staticmethod
    def key(model_id: str, context: StepContext, params: StepParams) -> str:
        payload = json.dumps(
            [model_id, context.question, list(context.steps), dataclasses.asdict(params)], sort_keys=True
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def get(self, key: str) -> StepOutput | None:
        with self._lock:
            row = self._db.execute("SELECT output FROM steps WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        data["finish_reason"] = FinishReason(data["finish_reason"])
        data["token_logprobs"] = tuple(data["token_logprobs"])
        data["token_entropies"] = tuple(data["token_entropies"])
        data["extra"] = {**data.get("extra", {}), "replayed": True}
        return StepOutput(**data)

    def put(self, key: str, output: StepOutput) -> None:
        data = dataclasses.asdict(output)
        data["finish_reason"] = str(output.finish_reason)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO steps VALUES (?, ?)", (key, json.dumps(data)))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM steps").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


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
            return hit
        self.misses += 1
        output = self.inner.generate_step(context, params)
        self.cache.put(key, output)
        return output

    def close(self) -> None:
        self.inner.close()
