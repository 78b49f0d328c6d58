"""One run's wiring: load the draft, the target, the PRM (only when a policy needs one), the policies
(a router loads here) and the step/score caches, and close them all together.

``solve``, ``eval``, ``sweep`` and ``serve`` open a :class:`Run`; so can Python code::

    from arbitrage import Run, RunSpec

    with Run(RunSpec(draft="smollm2-135m", target="smollm2-135m", policies=["random"])) as run:
        trace = run.engine().solve("What is 2 + 3?")

Everything opened is registered on one :class:`contextlib.ExitStack` as soon as it exists, so a load
that fails (a missing target file, say) closes what was loaded before it, and leaving the ``with``
block closes everything, last opened first. Loading order: the cache file, the PRM, the policies (so a
bad router folder fails before any large model loads), the draft, the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from arbitrage.backends.base import Generator
from arbitrage.backends.loader import GeneratorOptions, load_generator
from arbitrage.backends.speculation import PriorCosts, Speculation, SpeculationConfig
from arbitrage.costs import CostModel
from arbitrage.engine import Engine, EngineConfig
from arbitrage.errors import ConfigError
from arbitrage.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from arbitrage.policies import RoutingPolicy, build_policy, needs_scorer, policy_options
from arbitrage.prm.registry import DEFAULT_PRM, ScorerOptions, load_scorer
from arbitrage.prompts import PromptStyle

if TYPE_CHECKING:
    from arbitrage.prm.base import StepScorer, StepScores

logger = logging.getLogger(__name__)

ModelLoader = Callable[[str, GeneratorOptions], Generator]  # (spec, options) -> generator
ScorerLoader = Callable[[str, ScorerOptions], "StepScorer"]  # (spec, options) -> step scorer
PolicyChoice = str | tuple[str, Any]  # a policy name (its default options), or (name, options object)


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What a run loads. Read by :class:`Run`."""

    draft: str = DEFAULT_DRAFT  # draft model spec: named model, .gguf path, or backend spec
    target: str = DEFAULT_TARGET  # target model spec (same forms)
    policies: Sequence[PolicyChoice] = ()  # policies built at open, in order (Run.policies)
    prm: str = DEFAULT_PRM  # step scorer spec, loaded only when a policy needs one (or with_prm)
    with_prm: bool = False  # load the PRM even when no listed policy needs it (e.g. data collection)
    n_ctx: int = 4096  # context window of local models (and local judge PRMs)
    seed: int = 0  # seed of the models' sampling
    prompt_style: PromptStyle = field(default_factory=PromptStyle)  # shared by draft and target
    cache: Path | None = None  # SQLite file replaying model steps (and scores, see below); None: all live
    # replay PRM scores from the cache too. Off by default: a replayed score is charged the seconds
    # stored at its first run (a judge's cost is its prefill, which depends on its KV cache then), so
    # latencies would stop being what a live run measures; turn it on only to save time
    replay_scores: bool = False
    shared_scorer: bool = False  # the PRM is called from several threads: serialise its calls
    # token-level speculation inside the target's text: the draft proposes tokens, the target checks them
    # in one batch (lossless for greedy steps; llama.cpp draft and target sharing a vocabulary).
    # None: off. The controller switches itself off where its measured costs say it cannot pay.
    speculation: SpeculationConfig | None = None
    # reproducible llama.cpp evaluation (determinism "auto": exact where the build allows, else aligned
    # chunks at +24% latency on the default pair); off: the serving mode, every cached position reused
    reproducible: bool = False


class SerialScorer:
    """A step scorer whose calls run one at a time (a local PRM holds one KV cache).

    A caller waiting for the lock waits inside its policy's decision, so the wait is counted in that
    step's ``policy_seconds`` and in the solve's latency; ``StepScores.seconds`` stays the PRM's own time.
    """

    def __init__(self, inner: StepScorer) -> None:
        self.inner = inner
        self.name = inner.name
        self._lock = threading.Lock()

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        with self._lock:
            return self.inner.score(question, steps, only_last=only_last)

    def close(self) -> None:
        self.inner.close()


def _options_of(choice: PolicyChoice) -> tuple[str, Any]:
    if isinstance(choice, str):
        return choice, policy_options(choice)
    return choice


class Run:
    """The loaded parts of one run (see the module docstring); a context manager."""

    def __init__(
        self,
        spec: RunSpec,
        *,
        load_model: ModelLoader = load_generator,
        load_prm: ScorerLoader = load_scorer,
    ) -> None:
        self.spec = spec
        self._load_model = load_model
        self._load_prm = load_prm
        self._stack = contextlib.ExitStack()
        self._open = False
        self.draft: Generator  # set by open()
        self.target: Generator
        self.scorer: StepScorer | None = None  # the PRM, when loaded
        self.policies: list[RoutingPolicy] = []  # built from spec.policies, in order

    @property
    def generator_options(self) -> GeneratorOptions:
        settings = None
        if self.spec.reproducible:
            from arbitrage.settings import load_settings

            settings = load_settings().model_copy(update={"llama_determinism": "auto"})
        return GeneratorOptions(
            n_ctx=self.spec.n_ctx, seed=self.spec.seed, prompt_style=self.spec.prompt_style, settings=settings
        )

    @property
    def needs_prm(self) -> bool:
        """Whether this run loads a PRM: asked for, or needed by one of its policies."""
        return self.spec.with_prm or any(needs_scorer(_options_of(c)[0]) for c in self.spec.policies)

    def open(self) -> Run:
        """Load everything; on any failure close what was loaded and re-raise."""
        from arbitrage.backends.cache import CachingGenerator, StepCache
        from arbitrage.prm.cache import CachingScorer, ScoreCache

        if self._open:
            raise ConfigError("This run is open already")
        spec = self.spec
        choices = [self._with_costs(*_options_of(c)) for c in spec.policies]  # validated before any load
        with contextlib.ExitStack() as stack:
            # 1. the cache file (steps and scores in one SQLite file, their own tables)
            step_cache = score_cache = None
            if spec.cache is not None:
                step_cache = StepCache(spec.cache)
                stack.callback(step_cache.close)
            # 2. the PRM, when a policy needs one
            if self.needs_prm:
                logger.info("loading PRM %s", spec.prm)
                scorer: StepScorer = self._load_prm(spec.prm, ScorerOptions(n_ctx=spec.n_ctx))
                stack.callback(scorer.close)
                if step_cache is not None and spec.replay_scores:  # PRM rewards replay too
                    score_cache = ScoreCache(step_cache.path)
                    stack.callback(score_cache.close)
                    scorer = CachingScorer(scorer, score_cache, f"{spec.prm}|{scorer.name}")
                self.scorer = SerialScorer(scorer) if spec.shared_scorer else scorer
            # 3. the policies (a router loads its weights here), before the large models
            self.policies = [build_policy(name, options, scorer=self.scorer) for name, options in choices]
            # 4. the draft and the target, each closed even if the other fails to load
            options = self.generator_options
            draft = self._load_model(spec.draft, options)
            stack.callback(draft.close)
            target = self._load_model(spec.target, options)
            stack.callback(target.close)
            speculation = self._speculate(target, draft)
            if step_cache is not None:
                style = _style_id(options.prompt_style)
                # a speculating target's steps are entries of their own, one set per speculation: its text
                # may differ from plain decoding's (a batch's logits are not always a decode's), and its
                # cost depends on the proposer, the controller's settings and what it knew beforehand
                mode = "" if speculation is None else f"|speculating:{_speculation_id(speculation)}"
                draft = CachingGenerator(draft, step_cache, f"{spec.draft}|{style}")
                target = CachingGenerator(target, step_cache, f"{spec.target}|{style}{mode}")
            self.draft, self.target = draft, target
            self._stack = stack.pop_all()
        self._open = True
        return self

    def _with_costs(self, name: str, options: Any) -> tuple[str, Any]:
        """``auto`` without a cost file reads this pair's costs measured here by bench-costs, if any."""
        from arbitrage.costs import costs_cache_path
        from arbitrage.policies.options import AutoOptions
        from arbitrage.settings import load_settings

        if isinstance(options, AutoOptions) and options.costs is None:
            cached = costs_cache_path(load_settings().home, self.spec.draft, self.spec.target)
            if cached.is_file():
                options = dataclasses.replace(options, costs=str(cached))
        return name, options

    def _speculate(self, target: Generator, draft: Generator) -> Speculation | None:
        """Attach token-level speculation: as the spec says, or where a policy (``auto``) wants it.
        The speculation attached, if any."""
        from arbitrage.costs import read_costs

        wanting = [p for p in self.policies if getattr(p, "wants_speculation", False)]
        config = self.spec.speculation
        if config is None and not wanting:
            return None
        speculation: Speculation | None
        if config is not None:  # asked for explicitly: an impossible pair is an error
            speculation = attach_speculation(target, draft, config)
            note = f"on (as configured; {speculation.proposer.name} proposing)"
        else:
            prior = None
            for policy in wanting:
                costs_file = getattr(getattr(policy, "plan", None), "costs_file", None)
                if costs_file:
                    prior = prior_costs(read_costs(Path(costs_file)))
            try:
                speculation = attach_speculation(target, draft, SpeculationConfig(), prior)
                note = f"adaptive ({speculation.proposer.name} proposing; measured costs decide per token)"
            except ConfigError as exc:
                note = f"off: {exc}"
                speculation = None
                logger.info("auto: no token-level speculation (%s)", exc)
        for policy in wanting:
            policy.speculation_note = note  # type: ignore[attr-defined]
        return speculation

    def close(self) -> None:
        """Close everything this run opened, last opened first (idempotent)."""
        self._open = False
        self._stack.close()

    def __enter__(self) -> Run:
        """Open the run (unless :meth:`open` did already) for a ``with`` block that closes it."""
        return self if self._open else self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def policy(self) -> RoutingPolicy:
        """The run's policy, when ``spec.policies`` names exactly one."""
        if len(self.policies) != 1:
            raise ConfigError(f"This run has {len(self.policies)} policies; pick one of run.policies")
        return self.policies[0]

    def build_policy(self, name: str, options: Any = None, **values: Any) -> RoutingPolicy:
        """Another policy over this run's PRM: ``options`` as an object, or as keyword ``values``.

        A policy that needs a PRM gets one only if the run loaded it (list it in ``spec.policies`` or
        set ``spec.with_prm``).
        """
        if options is None:
            options = policy_options(name, values)
        return build_policy(name, options, scorer=self.scorer)

    def engine(self, policy: RoutingPolicy | None = None, config: EngineConfig | None = None) -> Engine:
        """An engine over this run's draft and target (default: the run's one policy)."""
        if not self._open:
            raise ConfigError("Open the run first (with Run(...) as run: ...)")
        return Engine(self.draft, self.target, policy or self.policy, config)


def prior_costs(costs: CostModel) -> PriorCosts | None:
    """What speculation knows before it runs, from measured costs (None without small-batch figures)."""
    extra = costs.target.batch_extra
    if extra is None:
        return None
    return PriorCosts(decode=costs.target.decode, batch_token=extra, proposer=costs.draft.decode)


def attach_speculation(
    target: Generator, draft: Generator, config: SpeculationConfig, prior: PriorCosts | None = None
) -> Speculation:
    """Have ``target`` speculate with ``draft`` as its token proposer; a one-line error where it cannot.

    A draft with another vocabulary proposes at the text level (``backends/text_speculation.py``).
    """
    from arbitrage.backends.speculation import TokenProposer
    from arbitrage.backends.text_speculation import text_level_proposer

    speculate_with = getattr(target, "speculate_with", None)
    if speculate_with is None or not isinstance(draft, TokenProposer):
        raise ConfigError(
            "token-level speculation needs a llama.cpp target and draft "
            f"({target.name} drafted by {draft.name})"
        )
    vocabulary_key = getattr(target, "vocabulary_key", None)
    proposer: TokenProposer = draft
    if vocabulary_key is not None and draft.vocabulary_key() != vocabulary_key():
        proposer = text_level_proposer(draft, target)
    speculation = Speculation(proposer, config, prior)
    speculate_with(speculation)
    return speculation


def _speculation_id(speculation: Speculation) -> str:
    """A short hash of what decides a speculating target's steps and costs: the proposer, the controller's
    settings and the costs it knew before its first round (part of the step cache's model id)."""
    controller = speculation.controller
    prior = None if controller.prior is None else dataclasses.asdict(controller.prior)
    key = [speculation.proposer.name, dataclasses.asdict(controller.config), prior]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _style_id(style: PromptStyle) -> str:
    """A short hash of the prompt style, part of the step cache's model ids."""
    return hashlib.sha256(json.dumps(dataclasses.asdict(style), sort_keys=True).encode()).hexdigest()[:12]


__all__ = ["ModelLoader", "PolicyChoice", "Run", "RunSpec", "ScorerLoader", "SerialScorer"]
