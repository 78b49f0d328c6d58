"""Typer flags shared by several commands, each declared once.

Flags that travel together are a frozen dataclass (a *flag group*: the models, the policy and its
options, the step limits, the problems, the router training options) whose fields are declared with
:func:`option`: the default, the help and, where it is not the field's own name, the option the flag
sets. A command takes a group as one parameter whose default is :func:`flags`, and :func:`command`
spreads the group's fields into the command's flags, in place and in field order, then hands the
command the group built from them::

    @command
    def solve(question: str, models: Models = flags(Models), steps: Steps = flags(Steps)) -> None: ...

A group's defaults may differ per command (``flags(Policy, policy="verify")``), and a command may leave
fields out (``omit=``): they keep their dataclass default. Single flags that commands take on their own
are ``Annotated`` aliases.
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


def option(default: Any, help: str, *names: str, sets: str | None = None) -> Any:
    """A flag-group field: its ``default`` and its flag, ``--field-name`` (or ``names``) with ``help``.

    ``sets`` is the name of the option the flag sets where it differs from the field's (``path`` for
    ``--router``; ``lm.learning_rate`` for ``--lr``: a field of the lm router's options).
    """
    return dataclasses.field(
        default=default, metadata={"flag": typer.Option(*names, help=help), "sets": sets}
    )


def _settings(group: Any, part: str = "") -> dict[str, Any]:
    """The values of ``group``'s flags by the option each sets, those of ``part`` (``lm``) or of none."""
    values = {}
    for f in dataclasses.fields(group):
        owner, _, name = (f.metadata["sets"] or f.name).rpartition(".")
        if owner == part:
            values[name] = getattr(group, f.name)
    return values


# --- single flags -------------------------------------------------------------------------------
NCtx = Annotated[int, typer.Option(help="Context window of local models.")]
Concurrency = Annotated[
    int,
    typer.Option(help="Problems in flight at once (pays off with batching servers; local models serialise)."),
]
Data = Annotated[
    Path, typer.Argument(help="Collected step pairs: a folder of part-*.parquet shards, or one Parquet file.")
]


# --- flag groups --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Models:
    """``--draft``, ``--target`` and how the target runs."""

    draft: str = option(DEFAULT_DRAFT, "Draft model: a named model, a .gguf path, or a backend spec.")
    target: str = option(DEFAULT_TARGET, "Target model (same forms as --draft).")
    speculate: bool = option(
        False,
        "Token-level speculation inside the target's text: the draft proposes tokens, the target checks "
        "them in one batch (lossless for greedy steps; llama.cpp models; a draft with another vocabulary "
        "proposes at the text level). auto "
        "attaches it by itself where it can.",
        "--speculate/--no-speculate",
    )
    reproducible: bool = option(
        False,
        "llama.cpp evaluation: reproducible (a greedy step is a function of its text; aligned chunks "
        "re-evaluate decoded tokens, +24% latency on the default pair) or the serving mode (default).",
        "--reproducible/--serving",
    )

    def spec(self) -> dict[str, Any]:
        """The :class:`~arbitrage.run.RunSpec` fields these flags set."""
        from arbitrage.backends.speculation import SpeculationConfig

        return {
            "draft": self.draft,
            "target": self.target,
            "speculation": SpeculationConfig() if self.speculate else None,
            "reproducible": self.reproducible,
        }

    def recorded(self) -> dict[str, bool]:
        """The run modes an output folder's run.json records: only those set, so older folders resume."""
        return {key: True for key in ("speculate", "reproducible") if getattr(self, key)}


@dataclasses.dataclass(frozen=True)
class Policy:
    """The policy, its options (``None``: not given) and the PRM; ``keep_prefix`` rides along."""

    policy: str = option(
        "draft", "Routing policy: auto, draft, target, random, rsd, oracle, router, verify or early."
    )
    quality: float | None = option(
        None,
        "auto: share of target-only accuracy to keep, in (0, 1] (default 1: the target's own text, with "
        "token-level speculation where it pays; lower: the fastest measured policy that keeps it).",
    )
    p: float = option(0.5, "random: probability of escalating a step.")
    prm: str = option(
        DEFAULT_PRM,
        "rsd, oracle: process reward model, e.g. judge:MODEL[#PROMPT], arith, judge+arith:MODEL, hf:PATH, "
        "http:URL#MODEL.",
    )
    threshold: float | None = option(
        None,
        "rsd: accept a draft step iff its reward >= this (default 0.7); verify, early: escalate iff "
        "the score > this.",
    )
    tau: float | None = option(
        None, "oracle: escalate iff s_target − s_draft > τ (default 0); router: escalate when ŷ > τ."
    )
    target_samples: int = option(
        1, "oracle: target samples averaged for s_target (extra ones at temperature 0.7)."
    )
    diagnose: bool = option(False, "rsd: also score escalated target steps to count wasted escalations.")
    router: Path | None = option(
        None,
        "router: folder of a router saved by `arbitrage train-router` (default: the router installed with "
        "the package).",
        "--router",
        sets="path",
    )
    target_rate: float | None = option(
        None,
        "router, verify, early: pick τ from the router's table (verify, early: the calibration table) "
        "so about this share of steps go to the target.",
    )
    score: str | None = option(
        None,
        "verify, early: the score, escalate iff it exceeds --threshold. verify: target_nll (default), "
        "gsi, target_min_nll, disagree, divergence; early: the draft's confidence, draft_entropy "
        "(default), draft_nll, draft_max_nll, one of verify's on the probe's tokens, or random (the "
        "cost-matched control).",
    )
    calibration: Path | None = option(
        None,
        "verify, early: calibration table for --target-rate (verify: from `arbitrage "
        "calibrate-verify`; default: the installed one).",
    )
    probe_tokens: int | None = option(
        None,
        "early: draft tokens of a step the policy decides after (default 1: the draft's first token); "
        "0: decide before the draft writes, from its confidence on the last step.",
    )
    target_steps: int | None = option(
        None,
        "early: the target writes the first this many steps of every answer, before any other rule "
        "(default 0).",
    )
    keep_prefix: str = option(
        "verified",
        "Escalated greedy steps keep the draft tokens the target agrees with: verified (when the policy "
        "had the target verify the step), always (verify first), never.",
    )

    def given(self, seed: int) -> dict[str, Any]:
        """The policy options as flags give them, by option name (``None``: not given)."""
        options = {k: v for k, v in _settings(self).items() if k not in ("policy", "prm", "keep_prefix")}
        return {**options, "seed": seed}

    def choice(self, seed: int) -> tuple[str, Any]:
        """``(policy, its validated options)``, see :func:`policy_choice`."""
        return policy_choice(self.policy, **self.given(seed))


@dataclasses.dataclass(frozen=True)
class Steps:
    """Step limits, sampling, and the local models' context window."""

    max_steps: int = option(40, "Stop after this many steps.")
    max_tokens: int = option(2048, "Stop once the solution holds this many tokens.")
    max_step_tokens: int = option(256, "Cap on tokens per step.")
    separator: str = option("\\n\\n", "Step separator, with escapes (\\n\\n or \\n).")
    temperature: float = option(0.0, "Sampling temperature (0 = greedy).")
    seed: int = option(0, "Seed for sampling and the random policy.")
    n_ctx: int = option(4096, "Context window of local models.")

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

    dataset: str | None = option(
        None, "Named dataset: gsm8k, gsm8k-train, math500, olympiadbench, aime24, amc23."
    )
    data_file: Path | None = option(None, "Your own JSON-lines problem file instead of --dataset.")
    question_field: str | None = option(None, "--data-file: question field (auto-detected).")
    answer_field: str | None = option(None, "--data-file: gold answer field (auto-detected).")
    data_dir: Path | None = option(None, "Folder of the named datasets (default: shared/datasets).")
    limit: int | None = option(None, "Number of problems (default: all).")
    offset: int = option(0, "Skip this many problems first.")

    def load(self, *, file_wins: bool = False) -> tuple[str, list[Problem]]:
        """``(name, problems)``; given both, an error, or with ``file_wins`` (a command whose
        ``--dataset`` has a default) the file."""
        from arbitrage.evaluation.datasets import load_problems

        dataset = None if file_wins and self.data_file is not None else self.dataset
        return load_problems(dataset, self.data_file, self.question_field, self.answer_field,
                             self.data_dir, self.offset, self.limit)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Training:
    """How to train a router: :class:`~arbitrage.router.train.TrainOptions` (and its ``lm``) as flags."""

    kind: str = option(
        "features", "Router kind: features (scikit-learn, fast) or lm (fine-tuned transformer)."
    )
    classes: int = option(2, "Label scheme: 2 (binary, y = 1[Δ > 0]), 4 or 10 Δ bins.")
    score: str = option(
        "p_positive", "Class probabilities -> ŷ: p_positive (P(Δ > 0)) or expected (E[Δ] mapped to [0, 1])."
    )
    label: str = option(
        "prm",
        "Advantage the labels come from: prm (y = 1[Δ > 0], the PRM's judgement) or outcome "
        "(y = 1[outcome_advantage > 0], grounded labels from `collect --labels outcome`; rows without them "
        "are dropped).",
        "--label",
        sets="label_source",
    )
    inputs: str = option(
        "draft",
        "features router inputs: draft (the paper's router: the draft's side only), target (the target's "
        "verification of the draft step) or both. target/both verify every draft step with the target at "
        "routing time.",
    )
    annotate: bool = option(
        True, "History annotation: who wrote each earlier step.", "--annotate/--no-annotate"
    )
    downsample: bool = option(
        True, "Balance the two labels by downsampling the majority.", "--downsample/--no-downsample"
    )
    val_fraction: float = option(0.2, "Share of question ids held out for validation.")
    seed: int = option(0, "Seed of the split, the downsampling and the model.")
    estimator: str = option("logistic", "features: logistic (default) or gbt (gradient boosting).")
    backbone: str | None = option(
        None,
        "lm: backbone to fine-tune: a local Hugging Face model folder, a .gguf file, or a named model.",
        sets="lm.backbone",
    )
    epochs: float = option(2.0, "lm: passes over the training rows.", sets="lm.epochs")
    batch_size: int = option(8, "lm: rows per optimizer step.", sets="lm.batch_size")
    lr: float = option(
        3e-5, "lm: peak learning rate (AdamW, linear schedule).", "--lr", sets="lm.learning_rate"
    )
    max_length: int = option(
        512, "lm: tokens per input (question + history + draft step).", sets="lm.max_length"
    )
    max_steps: int | None = option(None, "lm: stop after this many optimizer steps.", sets="lm.max_steps")
    device: str = option("auto", "lm: auto (CUDA when available), cpu, cuda or cuda:N.", sets="lm.device")
    train_layers: int | None = option(
        None,
        "lm: train only the head and the last N blocks; 0: the head only, on cached frozen features (fast "
        "on CPU). Default: the whole model.",
        sets="lm.train_layers",
    )
    head_lr: float = option(
        5e-3, "lm --train-layers 0: learning rate of the head.", "--head-lr", sets="lm.head_learning_rate"
    )

    def options(self) -> TrainOptions:
        """The validated :class:`~arbitrage.router.train.TrainOptions`."""
        from arbitrage.errors import RouterError
        from arbitrage.router.lm import LMOptions
        from arbitrage.router.train import TrainOptions

        if self.kind == "lm" and self.backbone is None:
            raise RouterError(
                "--kind lm needs --backbone: a Hugging Face model folder, a .gguf file or a named model"
            )
        return TrainOptions(**_settings(self), lm=LMOptions(**_settings(self, "lm")))


@dataclasses.dataclass(frozen=True)
class _Group:
    cls: type[Any]
    defaults: dict[str, Any]
    omit: tuple[str, ...]

    def fields(self) -> Iterator[tuple[str, Any, Any]]:
        """``(name, Annotated type, default)`` of each flag, in field order."""
        hints = typing.get_type_hints(self.cls)
        for f in dataclasses.fields(self.cls):
            if f.name not in self.omit:
                hint = cast(Any, Annotated)[hints[f.name], f.metadata["flag"]]
                yield f.name, hint, self.defaults.get(f.name, f.default)

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
    unset = [f.metadata["sets"] or f.name for f in dataclasses.fields(Policy) if f.default is None]
    return name in unset
