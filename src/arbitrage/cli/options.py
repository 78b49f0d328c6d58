"""Typer flags shared by several commands, each declared once.

Single flags are ``Annotated`` aliases. Flags that travel together are a frozen dataclass (a *flag
group*: the models, the policy and its options, the step limits, the problems, the router training
options); a command takes a group as one parameter whose default is :func:`flags`, and :func:`command`
spreads the group's fields into the command's flags, in place and in field order, then hands the
command the group built from them::

    @command
    def solve(question: str, models: Models = flags(Models), steps: Steps = flags(Steps)) -> None: ...

A group's defaults may differ per command (``flags(Policy, policy="verify")``), and a command may leave
fields out (``omit=``): they keep their dataclass default.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer

from arbitrage.errors import ConfigError, PolicyOptionError
from arbitrage.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from arbitrage.prm.registry import DEFAULT_PRM

if TYPE_CHECKING:
    from arbitrage.backends.base import StepParams
    from arbitrage.engine import EngineConfig
    from arbitrage.evaluation.datasets import Problem
    from arbitrage.router.train import TrainOptions

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

# --- single flags -------------------------------------------------------------------------------
Draft = Annotated[str, typer.Option(help="Draft model: a named model, a .gguf path, or a backend spec.")]
Target = Annotated[str, typer.Option(help="Target model (same forms as --draft).")]
PolicyName = Annotated[
    str,
    typer.Option(help="Routing policy: auto, draft, target, random, rsd, oracle, router, verify or early."),
]
Quality = Annotated[
    float | None,
    typer.Option(
        help="auto: share of target-only accuracy to keep, in (0, 1] (default 1: the target's own text, "
        "with token-level speculation where it pays; lower: the fastest measured policy that keeps it)."
    ),
]
Speculate = Annotated[
    bool,
    typer.Option(
        "--speculate/--no-speculate",
        help="Token-level speculation inside the target's text: the draft proposes tokens, the target "
        "checks them in one batch (lossless for greedy steps; llama.cpp models sharing a vocabulary). "
        "auto attaches it by itself where it can.",
    ),
]
Reproducible = Annotated[
    bool,
    typer.Option(
        "--reproducible/--serving",
        help="llama.cpp evaluation: reproducible (a greedy step is a function of its text; aligned chunks "
        "re-evaluate decoded tokens, +24% latency on the default pair) or the serving mode (default).",
    ),
]
P = Annotated[float, typer.Option(help="random: probability of escalating a step.")]
MaxSteps = Annotated[int, typer.Option(help="Stop after this many steps.")]
MaxTokens = Annotated[int, typer.Option(help="Stop once the solution holds this many tokens.")]
MaxStepTokens = Annotated[int, typer.Option(help="Cap on tokens per step.")]
Separator = Annotated[str, typer.Option(help="Step separator, with escapes (\\n\\n or \\n).")]
Temperature = Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")]
Seed = Annotated[int, typer.Option(help="Seed for sampling and the random policy.")]
NCtx = Annotated[int, typer.Option(help="Context window of local models.")]
Dataset = Annotated[
    str | None, typer.Option(help="Named dataset: gsm8k, gsm8k-train, math500, olympiadbench, aime24, amc23.")
]
DataFile = Annotated[Path | None, typer.Option(help="Your own JSON-lines problem file instead of --dataset.")]
QuestionField = Annotated[str | None, typer.Option(help="--data-file: question field (auto-detected).")]
AnswerField = Annotated[str | None, typer.Option(help="--data-file: gold answer field (auto-detected).")]
DataDir = Annotated[
    Path | None, typer.Option(help="Folder of the named datasets (default: shared/datasets).")
]
Limit = Annotated[int | None, typer.Option(help="Number of problems (default: all).")]
Offset = Annotated[int, typer.Option(help="Skip this many problems first.")]
Concurrency = Annotated[
    int,
    typer.Option(help="Problems in flight at once (pays off with batching servers; local models serialise)."),
]
Router = Annotated[
    Path | None,
    typer.Option(
        "--router",
        help="router: folder of a router saved by `arbitrage train-router` (default: the router installed "
        "with the package).",
    ),
]
Tau = Annotated[
    float | None,
    typer.Option(
        help="oracle: escalate iff s_target − s_draft > τ (default 0); router: escalate when ŷ > τ."
    ),
]
TargetRate = Annotated[
    float | None,
    typer.Option(
        help="router, verify, early: pick τ from the router's table (verify, early: the calibration table) "
        "so about this share of steps go to the target."
    ),
]
Score = Annotated[
    str | None,
    typer.Option(
        help="verify, early: the score, escalate iff it exceeds --threshold. verify: target_nll (default), "
        "gsi, target_min_nll, disagree, divergence; early: the draft's confidence, draft_entropy "
        "(default), draft_nll, draft_max_nll, or one of verify's on the probe's tokens."
    ),
]
Calibration = Annotated[
    Path | None,
    typer.Option(
        help="verify, early: calibration table for --target-rate (verify: from `arbitrage "
        "calibrate-verify`; default: the installed one)."
    ),
]
KeepPrefix = Annotated[
    str,
    typer.Option(
        help="Escalated greedy steps keep the draft tokens the target agrees with: verified (when the "
        "policy had the target verify the step), always (verify first), never."
    ),
]
Prm = Annotated[
    str,
    typer.Option(
        help="rsd, oracle: process reward model, e.g. judge:MODEL[#PROMPT], arith, judge+arith:MODEL, "
        "hf:PATH, http:URL#MODEL."
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(
        help="rsd: accept a draft step iff its reward >= this (default 0.7); verify, early: escalate iff "
        "the score > this."
    ),
]
TargetSamples = Annotated[
    int, typer.Option(help="oracle: target samples averaged for s_target (extra ones at temperature 0.7).")
]
ProbeTokens = Annotated[
    int | None,
    typer.Option(
        help="early: draft tokens of a step the policy decides after (default 1: the draft's first "
        "token); 0: decide before the draft writes, from its confidence on the last step."
    ),
]
Diagnose = Annotated[
    bool, typer.Option(help="rsd: also score escalated target steps to count wasted escalations.")
]

# router training (train-router, eval-router)
Data = Annotated[
    Path, typer.Argument(help="Collected step pairs: a folder of part-*.parquet shards, or one Parquet file.")
]
Kind = Annotated[
    str, typer.Option(help="Router kind: features (scikit-learn, fast) or lm (fine-tuned transformer).")
]
Classes = Annotated[int, typer.Option(help="Label scheme: 2 (binary, y = 1[Δ > 0]), 4 or 10 Δ bins.")]
RouterScore = Annotated[
    str,
    typer.Option(
        help="Class probabilities -> ŷ: p_positive (P(Δ > 0)) or expected (E[Δ] mapped to [0, 1]).",
    ),
]
Annotate = Annotated[
    bool, typer.Option("--annotate/--no-annotate", help="History annotation: who wrote each earlier step.")
]
Downsample = Annotated[
    bool,
    typer.Option("--downsample/--no-downsample", help="Balance the two labels by downsampling the majority."),
]
Label = Annotated[
    str,
    typer.Option(
        "--label",
        help="Advantage the labels come from: prm (y = 1[Δ > 0], the PRM's judgement) or outcome "
        "(y = 1[outcome_advantage > 0], grounded labels from `collect --labels outcome`; rows without "
        "them are dropped).",
    ),
]
Inputs = Annotated[
    str,
    typer.Option(
        help="features router inputs: draft (the paper's router: the draft's side only), target (the "
        "target's verification of the draft step) or both. target/both verify every draft step with the "
        "target at routing time."
    ),
]
ValFraction = Annotated[float, typer.Option(help="Share of question ids held out for validation.")]
TrainSeed = Annotated[int, typer.Option(help="Seed of the split, the downsampling and the model.")]
Estimator = Annotated[str, typer.Option(help="features: logistic (default) or gbt (gradient boosting).")]
Backbone = Annotated[
    str | None,
    typer.Option(
        help="lm: backbone to fine-tune: a local Hugging Face model folder, a .gguf file, or a named model."
    ),
]
Epochs = Annotated[float, typer.Option(help="lm: passes over the training rows.")]
BatchSize = Annotated[int, typer.Option(help="lm: rows per optimizer step.")]
LearningRate = Annotated[float, typer.Option("--lr", help="lm: peak learning rate (AdamW, linear schedule).")]
MaxLength = Annotated[int, typer.Option(help="lm: tokens per input (question + history + draft step).")]
TrainMaxSteps = Annotated[int | None, typer.Option(help="lm: stop after this many optimizer steps.")]
Device = Annotated[str, typer.Option(help="lm: auto (CUDA when available), cpu, cuda or cuda:N.")]
TrainLayers = Annotated[
    int | None,
    typer.Option(
        help="lm: train only the head and the last N blocks; 0: the head only, on cached frozen features "
        "(fast on CPU). Default: the whole model."
    ),
]
HeadLearningRate = Annotated[
    float, typer.Option("--head-lr", help="lm --train-layers 0: learning rate of the head.")
]


# --- flag groups --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Models:
    """``--draft``, ``--target``."""

    draft: Draft = DEFAULT_DRAFT
    target: Target = DEFAULT_TARGET
    speculate: Speculate = False
    reproducible: Reproducible = False

    def spec(self) -> dict[str, Any]:
        """The :class:`~arbitrage.run.RunSpec` fields these flags set."""
        from arbitrage.backends.speculation import SpeculationConfig

        return {
            "draft": self.draft,
            "target": self.target,
            "speculation": SpeculationConfig() if self.speculate else None,
            "reproducible": self.reproducible,
        }


@dataclasses.dataclass(frozen=True)
class Policy:
    """The policy, its options (``None``: not given) and the PRM; ``keep_prefix`` rides along."""

    policy: PolicyName = "draft"
    quality: Quality = None
    p: P = 0.5
    prm: Prm = DEFAULT_PRM
    threshold: Threshold = None
    tau: Tau = None
    target_samples: TargetSamples = 1
    diagnose: Diagnose = False
    router: Router = None
    target_rate: TargetRate = None
    score: Score = None
    calibration: Calibration = None
    probe_tokens: ProbeTokens = None
    keep_prefix: KeepPrefix = "verified"

    def given(self, seed: int) -> dict[str, Any]:
        """The policy options as flags give them, by option name (``None``: not given)."""
        return {"quality": self.quality, "p": self.p, "seed": seed, "path": self.router, "tau": self.tau,
                "target_rate": self.target_rate, "threshold": self.threshold,
                "target_samples": self.target_samples, "diagnose": self.diagnose, "score": self.score,
                "calibration": self.calibration, "probe_tokens": self.probe_tokens}  # fmt: skip

    def choice(self, seed: int) -> tuple[str, Any]:
        """``(policy, its validated options)``, see :func:`policy_choice`."""
        return policy_choice(self.policy, **self.given(seed))


@dataclasses.dataclass(frozen=True)
class Steps:
    """Step limits, sampling, and the local models' context window."""

    max_steps: MaxSteps = 40
    max_tokens: MaxTokens = 2048
    max_step_tokens: MaxStepTokens = 256
    separator: Separator = "\\n\\n"
    temperature: Temperature = 0.0
    seed: Seed = 0
    n_ctx: NCtx = 4096

    def step(self) -> StepParams:
        from arbitrage.backends.base import StepParams

        return StepParams(
            separator=parse_separator(self.separator),
            max_step_tokens=self.max_step_tokens,
            temperature=self.temperature,
            seed=self.seed if self.temperature > 0 else None,
        )

    def config(self, keep_prefix: str = "verified") -> EngineConfig:
        from arbitrage.engine import EngineConfig

        return EngineConfig(
            step=self.step(),
            max_steps=self.max_steps,
            max_total_tokens=self.max_tokens,
            keep_prefix=keep_prefix,  # type: ignore[arg-type]  # checked by EngineConfig
        )


@dataclasses.dataclass(frozen=True)
class Problems:
    """The problems: a named dataset or a JSON-lines file, and the slice of it."""

    dataset: Dataset = None
    data_file: DataFile = None
    question_field: QuestionField = None
    answer_field: AnswerField = None
    data_dir: DataDir = None
    limit: Limit = None
    offset: Offset = 0

    def load(self, *, file_wins: bool = False) -> tuple[str, list[Problem]]:
        """``(name, problems)``; given both, an error, or with ``file_wins`` (a command whose
        ``--dataset`` has a default) the file."""
        from arbitrage.evaluation.datasets import load_problems

        dataset = None if file_wins and self.data_file is not None else self.dataset
        return load_problems(dataset, self.data_file, self.question_field, self.answer_field,
                             self.data_dir, self.offset, self.limit)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Training:
    """How to train a router (``TrainOptions`` as flags)."""

    kind: Kind = "features"
    classes: Classes = 2
    score: RouterScore = "p_positive"
    label: Label = "prm"
    inputs: Inputs = "draft"
    annotate: Annotate = True
    downsample: Downsample = True
    val_fraction: ValFraction = 0.2
    seed: TrainSeed = 0
    estimator: Estimator = "logistic"
    backbone: Backbone = None
    epochs: Epochs = 2.0
    batch_size: BatchSize = 8
    lr: LearningRate = 3e-5
    max_length: MaxLength = 512
    max_steps: TrainMaxSteps = None
    device: Device = "auto"
    train_layers: TrainLayers = None
    head_lr: HeadLearningRate = 5e-3

    def options(self) -> TrainOptions:
        """The validated :class:`~arbitrage.router.train.TrainOptions`."""
        from arbitrage.errors import RouterError
        from arbitrage.router.lm import LMOptions
        from arbitrage.router.train import TrainOptions

        if self.kind == "lm" and self.backbone is None:
            raise RouterError(
                "--kind lm needs --backbone: a Hugging Face model folder, a .gguf file or a named model"
            )
        lm = LMOptions(
            backbone=self.backbone, epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.lr,
            max_length=self.max_length, max_steps=self.max_steps, device=self.device,
            train_layers=self.train_layers, head_learning_rate=self.head_lr,
        )  # fmt: skip
        return TrainOptions(
            kind=self.kind, classes=self.classes, score=self.score, annotate=self.annotate,
            downsample=self.downsample, val_fraction=self.val_fraction, seed=self.seed,
            estimator=self.estimator, lm=lm, label_source=self.label, inputs=self.inputs,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Group:
    cls: type[Any]
    defaults: dict[str, Any]
    omit: tuple[str, ...]

    def fields(self) -> Iterator[tuple[str, Any, Any]]:
        """``(name, Annotated type, default)`` of each flag, in field order."""
        hints = typing.get_type_hints(self.cls, include_extras=True)
        for f in dataclasses.fields(self.cls):
            if f.name not in self.omit:
                yield f.name, hints[f.name], self.defaults.get(f.name, f.default)

    def build(self, values: dict[str, Any]) -> Any:
        given = {name: values.pop(name) for name, _, _ in self.fields()}
        return self.cls(**{**{k: v for k, v in self.defaults.items() if k in self.omit}, **given})


def flags(cls: type[T], *, omit: tuple[str, ...] = (), **defaults: Any) -> T:
    """A flag group as a command parameter's default (see the module docstring)."""
    return cast(T, _Group(cls, defaults, omit))


def command(func: F) -> F:
    """``func`` with each flag-group parameter spread into its flags (see the module docstring)."""
    own = inspect.signature(func, eval_str=True)
    groups = {n: p.default for n, p in own.parameters.items() if isinstance(p.default, _Group)}
    params = []
    for name, param in own.parameters.items():
        if name not in groups:
            params.append(param)
            continue
        for field, hint, default in groups[name].fields():
            params.append(inspect.Parameter(field, param.kind, default=default, annotation=hint))
    signature = own.replace(parameters=params)  # raises on a flag that two groups declare

    @functools.wraps(func)
    def spread(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        built = {name: group.build(values) for name, group in groups.items()}
        return func(**values, **built)

    spread.__signature__ = signature  # type: ignore[attr-defined]
    spread.__annotations__ = {p.name: p.annotation for p in params}
    return cast(F, spread)


def parse_separator(raw: str) -> str:
    """Turn a separator typed on the command line (``\\n\\n``) into the real characters."""
    try:
        value = codecs.decode(raw, "unicode_escape")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Invalid --separator {raw!r}: {exc}") from exc
    if not value:
        raise ConfigError("--separator must not be empty")
    return value


# --- policy options from flags ------------------------------------------------------------------
def flag(option: str) -> str:
    """The command-line flag of a policy option (``target_rate`` -> ``--target-rate``)."""
    return FLAGS.get(option, "--" + option.replace("_", "-"))


FLAGS = {"path": "--router"}  # policy options whose flag is not --<option-name>


@contextmanager
def flag_errors() -> Iterator[None]:
    """Re-raise policy option errors with the options spelled as this CLI's flags."""
    try:
        yield
    except PolicyOptionError as exc:
        raise ConfigError(exc.render(flag)) from None


def policy_choice(policy: str, **flags: Any) -> tuple[str, Any]:
    """``(policy, its validated options)`` from a command's policy flags (``None``: not given).

    Each policy takes the flags it has an option for; a flag given explicitly (not None) that the
    policy has no option for is an error, so ``--router`` with ``--policy random`` never goes unnoticed.
    """
    from arbitrage.policies import POLICIES, policy_entry, policy_options
    from arbitrage.policies.options import option_types

    fields = option_types(policy_entry(policy).options)
    for name, value in flags.items():
        if value is not None and name not in fields and _optional_flag(name):
            owners = [n for n, e in POLICIES.items() if name in option_types(e.options)]
            raise ConfigError(f"{flag(name)} applies to --policy {', '.join(owners)} only")
    values = {
        k: str(v) if isinstance(v, Path) else v for k, v in flags.items() if k in fields and v is not None
    }
    with flag_errors():
        return policy, policy_options(policy, values)


def _optional_flag(name: str) -> bool:
    # flags without a default: given means meant
    optional = ("quality", "path", "tau", "target_rate", "threshold", "score", "calibration")
    return name in (*optional, "probe_tokens")
