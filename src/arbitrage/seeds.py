"""Sampling seeds shared by everything that draws extra samples: one rule, so runs agree.

The oracle's extra target samples, the collector's extra target samples and Monte-Carlo rollouts all
seed a sampled step call with :func:`sample_seed`: a hash of the run's seed, the question, the step the
sample is for and the sample's number. The seed depends on nothing else (not on worker order, not on
what was sampled before), so a sample is reproducible in any order and under any concurrency, and the
same (question, step, sample) gets the same seed in a collected row and at routing time.
"""

from __future__ import annotations

import hashlib


def sample_seed(seed: int, question: str, step: int, sample: int) -> int:
    """A 32-bit sampling seed: the first 4 bytes (little-endian) of sha256("seed|question|step|sample").

    ``step`` is the 0-based index in the solution of the step being sampled (the number of steps
    before it); ``sample`` numbers the samples for that step (0 is usually the greedy one).
    """
    key = f"{seed}|{question}|{step}|{sample}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")
