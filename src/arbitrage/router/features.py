"""The ``features`` router: scikit-learn on signals the draft already produced, well under a millisecond.

Features of one decision (all computed from a :class:`RouterExample`, nothing generated):

- **logprob** statistics of the draft step's tokens: mean, min, std, 10/25/50 % quantiles, sum, share
  of tokens with p < 0.5, < 0.1 and < 0.01, whether logprobs were available at all.
- **entropy** of the draft's next-token distributions: mean, max, std, 75/90 % quantiles, share of
  tokens above 1 and 2 nats.
- **length and position**: tokens (and log), characters, words, lines, the step index, how the step
  ended (separator / end of answer / token cap), the question's length.
- **history** (only with history annotation): share and count of earlier steps the target wrote,
  whether the last one was, the length of the current run of target steps.
- **text** of the step: digit share, numbers, ``=`` signs, operators, the equations it states checked
  and found wrong (by the arithmetic verifier, :mod:`arbitrage.prm.arithmetic`), ``\\boxed``,
  conclusion words ("therefore", "so"...), hedges ("wait", "mistake"...), LaTeX, "Step N" openings, the
  share of its numbers not seen in the question or earlier steps, word overlap with the previous step.
- **target side** (only with ``inputs`` ``target`` or ``both``): the target's verification of the draft
  step: its mean and minimum token logprob, the GSI tilt (target mean logprob − draft mean logprob),
  the share of tokens that are the target's greedy choice, whether and where (relative to the step's
  length) the target's own step would diverge, whether it would end the answer there, the verified
  token count, and whether a verification was available at all.

Inputs (``inputs``, saved with the router): ``draft`` (the default, the paper's router: only what the
draft produced, no target call at routing time), ``target`` (the target-side features, plus the
routing history when annotated) and ``both`` (all). Routers with target-side inputs make the routing
policy verify every draft step with the target; that verification is part of the routing latency.

Estimators (``estimator``): ``logistic`` (default: standardised features, multinomial logistic
regression; inference is a dot product in numpy, weights saved as plain arrays) and ``gbt``
(scikit-learn's histogram gradient boosting, on one OpenMP thread: non-linear, about ten times
slower to score, saved with joblib, i.e. pickle: load only router folders you trust).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from arbitrage.errors import RouterError
from arbitrage.prm.arithmetic import find_equations
from arbitrage.router.base import RouterExample
from arbitrage.router.labels import LabelScheme

if TYPE_CHECKING:
    from arbitrage.backends.base import StepOutput
    from arbitrage.trace import StepRecord

LOGPROB_FEATURES = (
    "lp_mean",
    "lp_min",
    "lp_std",
    "lp_q10",
    "lp_q25",
    "lp_q50",
    "lp_sum",
    "lp_share_p50",
    "lp_share_p10",
    "lp_share_p01",
    "has_logprobs",
)
ENTROPY_FEATURES = ("ent_mean", "ent_max", "ent_std", "ent_q75", "ent_q90", "ent_share_1", "ent_share_2")
LENGTH_FEATURES = (
    "tokens",
    "log_tokens",
    "chars",
    "words",
    "lines",
    "step_index",
    "log_step_index",
    "finish_step",
    "finish_eos",
    "finish_length",
    "question_words",
)
HISTORY_FEATURES = ("hist_target_share", "hist_targets", "hist_last_target", "hist_target_run")
TEXT_FEATURES = (
    "digit_share",
    "numbers",
    "equals",
    "operators",
    "arith_checked",
    "arith_wrong",
    "boxed",
    "conclusion_words",
    "hedge_words",
    "latex",
    "step_heading",
    "new_number_share",
    "prev_overlap",
)
DRAFT_FEATURES = LOGPROB_FEATURES + ENTROPY_FEATURES + LENGTH_FEATURES + HISTORY_FEATURES + TEXT_FEATURES
TARGET_FEATURES = (
    "t_mean_logprob",
    "t_min_logprob",
    "t_gsi",
    "t_agreement",
    "t_diverges",
    "t_divergence_pos",
    "t_end_is_eos",
    "t_log_tokens",
    "t_verified",
)
ALL_FEATURES = DRAFT_FEATURES + TARGET_FEATURES
INPUTS = ("draft", "target", "both")  # which side's features a router reads (train-router --inputs)


def feature_names(annotate: bool, inputs: str = "draft") -> tuple[str, ...]:
    """The features a router uses: by ``inputs``; history features only with history annotation."""
    if inputs not in INPUTS:
        raise RouterError(f"--inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    names = {"draft": DRAFT_FEATURES, "target": HISTORY_FEATURES + TARGET_FEATURES, "both": ALL_FEATURES}
    return tuple(f for f in names[inputs] if annotate or f not in HISTORY_FEATURES)


def inputs_of(names: Sequence[str]) -> str:
    """Which inputs a feature list reads (``draft``, ``target`` or ``both``)."""
    target = any(n in TARGET_FEATURES for n in names)
    draft = any(n in DRAFT_FEATURES and n not in HISTORY_FEATURES for n in names)
    return "both" if target and draft else "target" if target else "draft"


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_OPERATOR = re.compile(r"[+\-*/×÷]|\\times|\\cdot|\\div")
_CONCLUSION = re.compile(r"\b(?:therefore|thus|so|hence|total|altogether|in total)\b", re.IGNORECASE)
_HEDGE = re.compile(r"\b(?:wait|hmm|maybe|perhaps|actually|mistake|recheck|re-check|let me|assume)\b", re.I)
_LATEX = re.compile(r"\\[a-zA-Z]+|\$")
_HEADING = re.compile(r"^\s*(?:#+\s*)?(?:\*\*)?\s*step\s*\d", re.IGNORECASE)
_WORD = re.compile(r"\w+")


def check_arithmetic(text: str) -> tuple[int, int]:
    """(equations checked, equations wrong) among those the step states.

    The arithmetic verifier's reading of the step (:func:`arbitrage.prm.arithmetic.find_equations`):
    exact, LaTeX- and unit-aware, and it never raises.
    """
    checks = find_equations(text)
    return len(checks), sum(1 for c in checks if not c.holds)


def _stats(values: tuple[float, ...]) -> tuple[np.ndarray, float, float]:
    a = np.asarray(values, dtype=float) if values else np.zeros(1)
    return np.sort(a), float(a.mean()), float(a.std())


def extract_features(example: RouterExample) -> dict[str, float]:
    """Every feature of :data:`ALL_FEATURES` for one decision."""
    f: dict[str, float] = {}
    # 1. token logprobs (sorted once; quantiles by index)
    lp, lp_mean, lp_std = _stats(example.draft_logprobs)
    n = lp.size
    f.update(
        lp_mean=lp_mean,
        lp_min=float(lp[0]),
        lp_std=lp_std,
        lp_q10=float(lp[int(0.1 * (n - 1))]),
        lp_q25=float(lp[int(0.25 * (n - 1))]),
        lp_q50=float(lp[int(0.5 * (n - 1))]),
        lp_sum=float(lp.sum()) if example.draft_logprobs else 0.0,
        lp_share_p50=float((lp < math.log(0.5)).mean()),
        lp_share_p10=float((lp < math.log(0.1)).mean()),
        lp_share_p01=float((lp < math.log(0.01)).mean()),
        has_logprobs=float(bool(example.draft_logprobs)),
    )
    # 2. entropies
    ent, ent_mean, ent_std = _stats(example.draft_entropies)
    m = ent.size
    f.update(
        ent_mean=ent_mean,
        ent_max=float(ent[-1]),
        ent_std=ent_std,
        ent_q75=float(ent[int(0.75 * (m - 1))]),
        ent_q90=float(ent[int(0.9 * (m - 1))]),
        ent_share_1=float((ent > 1.0).mean()),
        ent_share_2=float((ent > 2.0).mean()),
    )
    # 3. length and position
    text = example.draft_text
    words = _WORD.findall(text)
    tokens = example.draft_tokens or len(example.draft_logprobs)
    index = example.step_index
    f.update(
        tokens=float(tokens),
        log_tokens=math.log1p(tokens),
        chars=float(len(text)),
        words=float(len(words)),
        lines=float(text.count("\n") + 1),
        step_index=float(index),
        log_step_index=math.log1p(index),
        finish_step=float(example.draft_finish == "step"),
        finish_eos=float(example.draft_finish == "eos"),
        finish_length=float(example.draft_finish == "length"),
        question_words=math.log1p(len(example.question.split())),
    )
    # 4. routing history
    targets = sum(1 for r in example.roles if r == "target")
    run = 0
    for role in reversed(example.roles):
        if role != "target":
            break
        run += 1
    f.update(
        hist_target_share=targets / len(example.roles) if example.roles else 0.0,
        hist_targets=float(targets),
        hist_last_target=float(bool(example.roles) and example.roles[-1] == "target"),
        hist_target_run=float(run),
    )
    # 5. text of the step
    numbers = _NUMBER.findall(text)
    checked, wrong = check_arithmetic(text)
    if numbers:
        seen = set(_NUMBER.findall(example.question))
        for step in example.steps:
            seen.update(_NUMBER.findall(step))
        new_share = sum(1 for x in numbers if x not in seen) / len(numbers)
    else:
        new_share = 0.0
    if example.steps:
        prev, cur = set(_WORD.findall(example.steps[-1].lower())), {w.lower() for w in words}
        overlap = len(prev & cur) / len(prev | cur) if prev | cur else 0.0
    else:
        overlap = 0.0
    f.update(
        digit_share=sum(c.isdigit() for c in text) / len(text) if text else 0.0,
        numbers=float(len(numbers)),
        equals=float(text.count("=")),
        operators=float(len(_OPERATOR.findall(text))),
        arith_checked=float(checked),
        arith_wrong=float(wrong),
        boxed=float("\\boxed" in text),
        conclusion_words=float(len(_CONCLUSION.findall(text))),
        hedge_words=float(len(_HEDGE.findall(text))),
        latex=float(len(_LATEX.findall(text))),
        step_heading=float(bool(_HEADING.match(text))),
        new_number_share=new_share,
        prev_overlap=overlap,
    )
    # 6. the target's verification of the step (zeros and t_verified = 0 when there is none)
    v = example.verification
    if v is None:
        f.update(dict.fromkeys(TARGET_FEATURES, 0.0))
    else:
        f.update(
            t_mean_logprob=v.mean_logprob,
            t_min_logprob=v.min_logprob,
            t_gsi=v.gsi,
            t_agreement=v.agreement,
            t_diverges=float(v.first_divergence is not None),
            t_divergence_pos=1.0 if v.first_divergence is None else v.first_divergence / max(1, v.tokens),
            t_end_is_eos=float(v.end_is_eos),
            t_log_tokens=math.log1p(v.tokens),
            t_verified=1.0,
        )
    return f


def feature_matrix(examples: Sequence[RouterExample], names: Sequence[str]) -> np.ndarray:
    """``[len(examples), len(names)]`` float matrix."""
    out = np.empty((len(examples), len(names)), dtype=float)
    for i, example in enumerate(examples):
        f = extract_features(example)
        out[i] = [f[name] for name in names]
    return out


class _Model(Protocol):
    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...  # [n, features] -> [n, num_classes]
    def save(self, folder: Path) -> None: ...


class LogisticModel:
    """Standardised multinomial logistic regression, scored with plain numpy (weights as arrays)."""

    FILE = "features_logistic.npz"

    def __init__(
        self,
        mean: np.ndarray,
        scale: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        classes: np.ndarray,
        num_classes: int,
    ) -> None:
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept
        self.classes, self.num_classes = classes.astype(int), num_classes

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, num_classes: int, seed: int) -> LogisticModel:
        from sklearn.linear_model import LogisticRegression

        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
        model.fit((x - mean) / scale, labels)
        return cls(mean, scale, model.coef_, model.intercept_, model.classes_, num_classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(x) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:  # two classes seen: sklearn keeps one row of weights
            p1 = 0.5 * (1.0 + np.tanh(0.5 * logits[:, 0]))  # the logistic function, without overflow
            seen = np.stack([1.0 - p1, p1], axis=1)
        else:
            logits -= logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            seen = e / e.sum(axis=1, keepdims=True)
        probs = np.zeros((seen.shape[0], self.num_classes))
        probs[:, self.classes] = seen
        return probs

    def save(self, folder: Path) -> None:
        np.savez(
            folder / self.FILE,
            mean=self.mean,
            scale=self.scale,
            coef=self.coef,
            intercept=self.intercept,
            classes=self.classes,
            num_classes=self.num_classes,
        )

    @classmethod
    def load(cls, folder: Path) -> LogisticModel:
        with np.load(folder / cls.FILE) as data:
            return cls(
                data["mean"],
                data["scale"],
                data["coef"],
                data["intercept"],
                data["classes"],
                int(data["num_classes"]),
            )


class BoostingModel:
    """scikit-learn histogram gradient boosting (saved with joblib: pickle, trusted folders only)."""

    FILE = "features_gbt.joblib"

    def __init__(self, model: Any, num_classes: int) -> None:
        from threadpoolctl import ThreadpoolController

        self.model, self.num_classes = model, num_classes
        self.classes = np.asarray(model.classes_, dtype=int)
        # OpenMP limited to one thread while predicting: on one row, and on busy machines, a thread team
        # only costs time (a kept controller makes the limit cheap to apply)
        self._threads = ThreadpoolController()

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, num_classes: int, seed: int) -> BoostingModel:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        model = HistGradientBoostingClassifier(
            max_iter=200,
            learning_rate=0.05,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        )
        with threadpool_limits(limits=1, user_api="openmp"):
            model.fit(x, labels)
        return cls(model, num_classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        probs = np.zeros((np.atleast_2d(x).shape[0], self.num_classes))
        with self._threads.limit(limits=1, user_api="openmp"):
            probs[:, self.classes] = self.model.predict_proba(np.atleast_2d(x))
        return probs

    def save(self, folder: Path) -> None:
        import joblib

        joblib.dump({"model": self.model, "num_classes": self.num_classes}, folder / self.FILE)

    @classmethod
    def load(cls, folder: Path) -> BoostingModel:
        import joblib

        data = joblib.load(folder / cls.FILE)
        return cls(data["model"], int(data["num_classes"]))


ESTIMATORS: dict[str, type[LogisticModel] | type[BoostingModel]] = {
    "logistic": LogisticModel,
    "gbt": BoostingModel,
}


class FeaturesRouter:
    """Routes from hand-made features of the draft's step (see the module docstring)."""

    kind = "features"

    def __init__(
        self, model: _Model, scheme: LabelScheme, names: Sequence[str], annotate: bool, estimator: str
    ) -> None:
        unknown = [n for n in names if n not in ALL_FEATURES]
        if unknown:
            raise RouterError(f"The router uses unknown features {unknown} (saved by a newer arbitrage?)")
        self.model, self.scheme, self.names = model, scheme, tuple(names)
        self.annotate, self.estimator = annotate, estimator
        self.inputs = inputs_of(self.names)  # "draft" | "target" | "both": target ones need a verification

    @classmethod
    def fit(
        cls,
        examples: Sequence[RouterExample],
        labels: np.ndarray,
        scheme: LabelScheme,
        *,
        annotate: bool = True,
        estimator: str = "logistic",
        seed: int = 0,
        inputs: str = "draft",
    ) -> FeaturesRouter:
        """Train on examples with class labels from ``scheme``."""
        if estimator not in ESTIMATORS:
            raise RouterError(f"Unknown --estimator {estimator!r} (known: {', '.join(ESTIMATORS)})")
        names = feature_names(annotate, inputs)
        x = feature_matrix(examples, names)
        model = ESTIMATORS[estimator].fit(x, np.asarray(labels), scheme.num_classes, seed)
        return cls(model, scheme, names, annotate, estimator)

    def score_batch(self, examples: Sequence[RouterExample]) -> np.ndarray:
        if not examples:
            return np.zeros(0)
        return self.scheme.escalation_score(self.model.predict_proba(feature_matrix(examples, self.names)))

    def score(self, question: str, history: Sequence[StepRecord], draft_step: StepOutput) -> float:
        example = RouterExample.from_step(question, history, draft_step)
        return float(self.score_batch([example])[0])

    def config(self) -> dict[str, Any]:
        """What the router's config records about this kind."""
        return {"estimator": self.estimator, "features": list(self.names), "inputs": self.inputs}

    def save_weights(self, folder: Path) -> None:
        self.model.save(folder)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any], scheme: LabelScheme) -> FeaturesRouter:
        estimator = str(config.get("estimator", "logistic"))
        if estimator not in ESTIMATORS:
            raise RouterError(f"{folder}: unknown features estimator {estimator!r}")
        model = ESTIMATORS[estimator].load(folder)
        return cls(model, scheme, config["features"], bool(config["annotate"]), estimator)
