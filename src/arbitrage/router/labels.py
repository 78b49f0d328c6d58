"""Label schemes: how the advantage Δ of a row becomes a class, and class probabilities become ŷ.

- **binary** (2 classes, the default): class 1 when ``Δ > 0`` (the target's step scored higher), the
  oracle label ``y``; class 0 otherwise (ties, where draft and target wrote equally good steps, are 0).
- **4 / 10 classes** (the paper's ablation): Δ is cut into bins, half of them on each side of zero.
  Zero is always an edge, so the classes above it are exactly the rows with ``y = 1``. The other edges
  are quantiles of the *training* rows' Δ on each side (the negative side uses the rows with Δ < 0,
  the positive side those with Δ > 0), so every class holds about the same number of rows per side
  whatever the PRM's scale; they are fitted once and saved with the router. Bins that would be empty
  on the training rows are merged into a neighbour, so a scheme may end with fewer classes than asked
  (``num_classes`` says how many it has, ``requested_classes`` what was asked).

Class ``c`` holds ``edges[c-1] < Δ ≤ edges[c]`` (open-ended at both ends).

From class probabilities ``p`` to one escalation score ``ŷ`` in [0, 1] (``score``):

- ``p_positive`` (default): ``ŷ = P(Δ > 0) = Σ p_c`` over the classes above zero. For the binary
  scheme that is the classifier's P(y = 1); for every scheme ``ŷ > 0.5`` reads "more likely than not,
  the target writes the better step", so τ means the same across schemes.
- ``expected``: the expected advantage ``E[Δ] = Σ p_c · m_c`` (``m_c``: mean Δ of the training rows of
  class ``c``), mapped from [−1, 1] to [0, 1] by ``ŷ = (E[Δ] + 1) / 2``. Ranks steps by how much the
  target is expected to gain, not just how likely it is to gain anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from arbitrage.errors import RouterError

CLASS_COUNTS = (2, 4, 10)
LABEL_SOURCES = ("prm", "outcome")  # the advantage labels come from: PRM Δ, or the grounded outcome one
SCORE_MAPPINGS = ("p_positive", "expected")


@dataclass(frozen=True, slots=True)
class LabelScheme:
    """A fitted label scheme (saved in the router's config)."""

    edges: tuple[float, ...]  # sorted Δ edges, 0.0 among them; num_classes = len(edges) + 1
    class_means: tuple[float, ...]  # [num_classes] mean Δ of the training rows in each class
    score: str = "p_positive"  # class probabilities -> ŷ: "p_positive" or "expected"
    requested_classes: int = 2  # the class count asked for (2, 4 or 10)

    def __post_init__(self) -> None:
        if 0.0 not in self.edges or list(self.edges) != sorted(set(self.edges)):
            raise RouterError(
                f"Bad label scheme edges {self.edges}: need sorted, distinct, with 0 among them"
            )
        if len(self.class_means) != self.num_classes:
            raise RouterError(
                f"Label scheme: {len(self.class_means)} class means for {self.num_classes} classes"
            )
        if self.score not in SCORE_MAPPINGS:
            raise RouterError(f"Unknown score mapping {self.score!r} (known: {', '.join(SCORE_MAPPINGS)})")

    @property
    def num_classes(self) -> int:
        return len(self.edges) + 1

    @property
    def zero_class(self) -> int:
        """Index of the highest class with Δ ≤ 0; classes above it are the rows with y = 1."""
        return self.edges.index(0.0)

    @property
    def name(self) -> str:
        """Short description, e.g. ``binary`` or ``10-class/expected``."""
        base = "binary" if self.num_classes == 2 else f"{self.num_classes}-class"
        return base if self.score == "p_positive" else f"{base}/{self.score}"

    def labels(self, deltas: np.ndarray | Sequence[float]) -> np.ndarray:
        """Class of each Δ: ``[n]`` ints in ``[0, num_classes)``."""
        return np.searchsorted(np.asarray(self.edges), np.asarray(deltas, dtype=float), side="left")

    def positive(self, labels: np.ndarray) -> np.ndarray:
        """The binary oracle label y = 1[Δ > 0] of each class label."""
        return (np.asarray(labels) > self.zero_class).astype(int)

    def escalation_score(self, probs: np.ndarray) -> np.ndarray:
        """ŷ in [0, 1] from class probabilities ``[n, num_classes]`` (rows sum to 1)."""
        probs = np.atleast_2d(np.asarray(probs, dtype=float))
        if probs.shape[1] != self.num_classes:
            raise RouterError(
                f"Got probabilities for {probs.shape[1]} classes, the scheme has {self.num_classes}"
            )
        if self.score == "p_positive":
            score = probs[:, self.zero_class + 1 :].sum(axis=1)
        else:
            score = (probs @ np.asarray(self.class_means) + 1.0) / 2.0
        return np.clip(score, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "class_means": list(self.class_means),
            "score": self.score,
            "requested_classes": self.requested_classes,
            "num_classes": self.num_classes,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelScheme:
        try:
            return cls(
                edges=tuple(float(e) for e in data["edges"]),
                class_means=tuple(float(m) for m in data["class_means"]),
                score=str(data.get("score", "p_positive")),
                requested_classes=int(data.get("requested_classes", len(data["edges"]) + 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RouterError(f"Malformed label scheme in the router config: {exc}") from exc


def _side_edges(values: np.ndarray, bins: int) -> list[float]:
    """``bins − 1`` inner quantile edges of one side (fewer when the side has too few distinct values)."""
    if bins <= 1 or values.size == 0:
        return []
    levels = np.arange(1, bins) / bins
    return [float(q) for q in np.unique(np.quantile(values, levels, method="lower"))]


def fit_scheme(
    deltas: np.ndarray | Sequence[float], classes: int = 2, score: str = "p_positive"
) -> LabelScheme:
    """Fit a scheme's edges and class means on the training rows' Δ (see the module docstring)."""
    if classes not in CLASS_COUNTS:
        raise RouterError(f"--classes must be one of {', '.join(map(str, CLASS_COUNTS))}, got {classes}")
    if score not in SCORE_MAPPINGS:
        raise RouterError(f"--score must be one of {', '.join(SCORE_MAPPINGS)}, got {score!r}")
    d = np.asarray(deltas, dtype=float)
    if d.size == 0:
        raise RouterError("No rows to fit a label scheme on")
    half = classes // 2
    neg = _side_edges(d[d < 0], half)
    pos = _side_edges(d[d > 0], half)
    # a quantile edge equal to the side's maximum would leave the bin above it empty
    neg = [e for e in neg if e < 0]
    pos = [e for e in pos if 0 < e < d.max()]
    edges = sorted({*neg, 0.0, *pos})
    # merge bins that hold no training row into a neighbour (never removing the zero edge)
    while True:
        counts = np.bincount(np.searchsorted(edges, d, side="left"), minlength=len(edges) + 1)
        empty = [c for c in range(len(counts)) if counts[c] == 0]
        removable = [e for e in edges if e != 0.0]
        if not empty or not removable:
            break
        c = empty[0]
        candidates = [edges[i] for i in (c - 1, c) if 0 <= i < len(edges) and edges[i] != 0.0]
        if not candidates:
            break
        edges.remove(candidates[0])
    labels = np.searchsorted(edges, d, side="left")
    means = []
    for c in range(len(edges) + 1):
        members = d[labels == c]
        if members.size:
            means.append(float(members.mean()))
        else:  # an empty side (e.g. no row with Δ > 0): the middle of its range
            lo = edges[c - 1] if c > 0 else -1.0
            hi = edges[c] if c < len(edges) else 1.0
            means.append((lo + hi) / 2)
    return LabelScheme(edges=tuple(edges), class_means=tuple(means), score=score, requested_classes=classes)
