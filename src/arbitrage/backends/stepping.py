"""Step-boundary and token-choice helpers shared by the backends that decode token by token.

``find_step_end`` is the one rule for where a step ends in decoded text; the llama.cpp, transformers and
OpenAI-compatible backends all apply it, so a step means the same thing whichever backend wrote it.
"""

from __future__ import annotations

import numpy as np

from arbitrage.backends.base import StepParams


def find_step_end(text: str, separator: str) -> int | None:
    """Index where the step in ``text`` ends (start of the separator), or None if it has not ended.

    Works on decoded text, so a separator that straddles token boundaries, or shares a token with
    the step's last characters, is found all the same. Separators before any content (a model that
    opens with a blank line) do not end the step.
    """
    body_start = len(text) - len(text.lstrip())
    cut = text.find(separator, body_start)
    while cut >= 0 and not text[body_start:cut].strip():
        cut = text.find(separator, cut + 1)
    return cut if cut >= 0 else None


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax of a 1-D logits vector."""
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - np.log(np.exp(shifted).sum())


def entropy(logprobs: np.ndarray) -> float:
    """Entropy (nats) of the distribution whose log-probabilities are ``logprobs``."""
    return float(-(np.exp(logprobs) * logprobs).sum())


def choose_token(logprobs: np.ndarray, params: StepParams, rng: np.random.Generator) -> int:
    """Greedy pick at temperature 0, else a temperature / top-p sample from ``logprobs``."""
    if params.temperature == 0:
        return int(np.argmax(logprobs))
    scaled = logprobs / params.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, params.top_p)) + 1]
        mask = np.zeros_like(probs)
        mask[keep] = probs[keep]
        probs = mask / mask.sum()
    return int(rng.choice(probs.size, p=probs))
