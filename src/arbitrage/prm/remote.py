"""A process reward model served over HTTP by vLLM (``vllm serve Qwen/Qwen2.5-Math-PRM-7B``).

vLLM serves reward models through its pooling API: ``POST {base}/pooling`` with
``{"model": MODEL, "input": TEXT}`` answers ``{"object": "list", "data": [{"index": 0, "object":
"pooling", "data": [...]}], "usage": {...}}``. For a process reward model such as Qwen2.5-Math-PRM the
pooler is ``STEP``: ``data`` holds one entry per step tag (``<extra_0>``), the softmaxed two-class
output ``[p_wrong, p_right]``; the reward is ``p_right``. An entry that is a single number in [0, 1]
(a value-head PRM served with a sigmoid) is taken as the reward itself.

The input text is the Qwen2.5-Math-PRM format rendered here (ChatML: system "Please reason step by step,
...", user = question, assistant = steps each followed by ``<extra_0>``), so the server needs no chat
template. ``arbitrage.prm.serve`` serves any arbitrage scorer with this same protocol.

Requests time out after ``timeout_s``; connection errors, timeouts, 429 and 5xx answers are retried up
to ``retries`` times with exponential backoff (``backoff_s`` · 2^attempt); anything else fails at once with
the server's message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import httpx

from arbitrage.errors import ConfigError, ScorerError
from arbitrage.prm.base import QWEN_PRM_SYSTEM, StepScores, check_request, clamp_reward

logger = logging.getLogger(__name__)

STEP_TAG = "<extra_0>"
_RETRY_STATUS = {429, 500, 502, 503, 504}


def render_qwen_prm(question: str, steps: Sequence[str], system: str = QWEN_PRM_SYSTEM) -> str:
    """The Qwen2.5-Math-PRM input text (what its chat template renders, without a generation prompt)."""
    body = "".join(s.replace(STEP_TAG, "").strip() + STEP_TAG for s in steps)
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
        f"<|im_start|>assistant\n{body}<|im_end|>\n"
    )


def parse_rewards(payload: Any, steps: int, url: str) -> list[float]:
    """Step rewards from a vLLM pooling response (see the module docstring)."""
    try:
        entries = payload["data"][0]["data"]
    except (KeyError, IndexError, TypeError):
        raise ScorerError(f"{url} did not answer in vLLM's pooling format: {str(payload)[:200]}") from None
    if not isinstance(entries, list) or len(entries) != steps:
        got = len(entries) if isinstance(entries, list) else type(entries).__name__
        raise ScorerError(
            f"{url} returned {got} outputs for {steps} steps: is it a process reward model served with "
            f"STEP pooling on {STEP_TAG} (e.g. vllm serve Qwen/Qwen2.5-Math-PRM-7B)?"
        )
    rewards = []
    for entry in entries:
        if isinstance(entry, list) and len(entry) == 2:
            value = float(entry[1])
        elif isinstance(entry, list) and len(entry) == 1:
            value = float(entry[0])
        elif isinstance(entry, int | float):
            value = float(entry)
        else:
            raise ScorerError(f"{url}: cannot read a reward from the output {str(entry)[:80]}")
        if not 0.0 <= value <= 1.0:
            raise ScorerError(f"{url}: output {value} is not a probability; serve the PRM with softmax on")
        rewards.append(clamp_reward(value, url))
    return rewards


class RemoteScorer:
    """Scores steps with a PRM behind vLLM's ``/pooling`` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        timeout_s: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        system: str = QWEN_PRM_SYSTEM,
        client: httpx.Client | None = None,
    ) -> None:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"Not an http(s) URL for the PRM server: {base_url!r}")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ConfigError("timeout_s must be positive, retries and backoff_s non-negative")
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/v1")] if base.endswith("/v1") else base
        self.model = model
        self.retries = retries
        self.backoff_s = backoff_s
        self.system = system
        self.name = f"http({model} @ {parsed.netloc})"
        self._client = client or httpx.Client(timeout=timeout_s)
        self._owns_client = client is None
        self._checked_model = False

    def _request(self, method: str, path: str, json: dict[str, Any] | None = None) -> httpx.Response:
        url = self.base_url + path
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.request(method, url, json=json)
            except httpx.TimeoutException:
                last = "timed out"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in _RETRY_STATUS:
                    return response
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            logger.info("PRM request %s %s failed (%s), attempt %d", method, url, last, attempt + 1)
        raise ScorerError(f"PRM server {url} failed after {self.retries + 1} attempts: {last}")

    def _check_model(self) -> None:
        """Fail early, listing what is served, if the server does not serve ``model``."""
        self._checked_model = True
        response = self._request("GET", "/v1/models")
        if response.status_code != 200:
            return  # not every server lists its models; the pooling call will tell
        try:
            served = [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            return
        if self.model not in served:
            raise ScorerError(
                f"{self.base_url} does not serve {self.model!r} (it serves: {', '.join(served)})"
            )

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        check_request(question, steps)
        t0 = time.perf_counter()
        if not self._checked_model:
            self._check_model()
        payload = {"model": self.model, "input": render_qwen_prm(question, steps, self.system)}
        response = self._request("POST", "/pooling", json=payload)
        if response.status_code != 200:
            raise ScorerError(
                f"PRM server {self.base_url}/pooling answered HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        try:
            body = response.json()
        except ValueError:
            raise ScorerError(f"PRM server {self.base_url}/pooling did not answer JSON") from None
        rewards = parse_rewards(body, len(steps), self.base_url)
        usage = body.get("usage") or {}
        return StepScores(
            rewards=tuple(rewards),
            first=0,
            seconds=time.perf_counter() - t0,
            scorer=self.name,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
