"""Build a step scorer from a spec string, in one place, through a registry.

Specs (``--prm`` everywhere):

- ``judge:MODEL[#PROMPT]``: a local model as judge (a named model or a .gguf path). PROMPT is a built-in
  judge prompt (``basic``, ``strict``, ``fewshot``, ``recompute``; default ``basic``, the best measured)
  or a JSON file. The judge always loads its own model instance (own KV cache), even when it is the
  target's file.
- ``arith``: the arithmetic verifier.
- ``judge+arith:MODEL[#PROMPT]``: the judge, vetoed by the arithmetic verifier.
- ``hf:PATH[#FORMAT]``: a trained PRM checkpoint folder through transformers; FORMAT (``skywork``,
  ``qwen``, ``shepherd``) is detected from the folder's config when left out.
- ``http:URL#MODEL``: a reward model served by vLLM (``/pooling``), e.g. ``http:http://host:8000#Qwen/Qwen2.5-Math-PRM-7B``.
- ``mc:MODEL``: Monte-Carlo rollout values with a local model; needs gold answers (data collection).
  Rollouts run the engine, which stands above this package, so the scorer is built by
  :func:`arbitrage.labelling.rollout.load_scorer` (``eval-prm`` loads its scorers through it); here
  ``mc`` only says so.

A caller with scorers of its own passes ``scorers``: :data:`SCORERS` with its own entries added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arbitrage.errors import ConfigError, ScorerError
from arbitrage.prm.base import StepScorer
from arbitrage.settings import Settings

if TYPE_CHECKING:
    from arbitrage.prm.judge import JudgeModel

# the best scorer measured by `arbitrage eval-prm` on data/prm_eval (benchmarks/results/prm_eval/README.md)
DEFAULT_PRM = "judge+arith:qwen2.5-coder-1.5b#basic"


@dataclass(frozen=True, slots=True)
class ScorerOptions:
    """Options every scorer may use (each ignores what does not apply to it)."""

    n_ctx: int = 4096  # context window of local judge models
    settings: Settings | None = None
    timeout_s: float = 60.0  # http: seconds per request
    retries: int = 3  # http: retries after a failed request (connection error, 5xx, 429)
    device: str = "cpu"  # hf: torch device
    batch_size: int = 8  # hf: solutions per forward pass in batch scoring
    gold_answers: Mapping[str, str] | None = None  # mc (arbitrage.labelling.rollout): question -> gold answer
    rollouts: int = 4  # mc: completions per step


def _judge_model(model_spec: str, options: ScorerOptions) -> JudgeModel:
    from arbitrage.backends.loader import GeneratorOptions, load_generator

    model = load_generator(model_spec, GeneratorOptions(n_ctx=options.n_ctx, settings=options.settings))
    if not hasattr(model, "next_token_logprobs_counted"):
        model.close()
        raise ScorerError(f"A judge PRM needs a local llama.cpp model; {model_spec!r} is not one")
    return model  # type: ignore[return-value]


def _split_fragment(rest: str) -> tuple[str, str | None]:
    base, sep, fragment = rest.rpartition("#")
    return (base, fragment or None) if sep else (rest, None)


def _judge(rest: str, options: ScorerOptions) -> StepScorer:
    from arbitrage.prm.judge import JudgeScorer, resolve_prompt

    model_spec, prompt_name = _split_fragment(rest)
    if not model_spec:
        raise ConfigError("A judge PRM spec needs a model: judge:MODEL[#PROMPT]")
    prompt = resolve_prompt(prompt_name)  # before loading: a typo fails fast
    return JudgeScorer(_judge_model(model_spec, options), prompt)


def _judge_arith(rest: str, options: ScorerOptions) -> StepScorer:
    from arbitrage.prm.combine import VetoScorer

    return VetoScorer(_judge(rest, options))


def _arith(rest: str, options: ScorerOptions) -> StepScorer:
    from arbitrage.prm.arithmetic import ArithmeticVerifier

    if rest:
        raise ConfigError(f"The arithmetic verifier takes no argument (got 'arith:{rest}')")
    return ArithmeticVerifier()


def _hf(rest: str, options: ScorerOptions) -> StepScorer:
    from arbitrage.prm.hf import load_hf_prm

    path, fmt = _split_fragment(rest)
    if not path:
        raise ConfigError("An hf PRM spec needs a checkpoint folder: hf:PATH[#FORMAT]")
    return load_hf_prm(path, fmt, device=options.device, batch_size=options.batch_size)


def _http(rest: str, options: ScorerOptions) -> StepScorer:
    from arbitrage.prm.remote import RemoteScorer

    url, model = _split_fragment(rest)
    if not url or not model:
        raise ConfigError(f"An http PRM spec is http:URL#MODEL, got 'http:{rest}'")
    return RemoteScorer(url, model, timeout_s=options.timeout_s, retries=options.retries)


NO_GOLD_ANSWERS = "Monte-Carlo rollout values need gold answers (eval-prm supplies them)"


def _mc(rest: str, options: ScorerOptions) -> StepScorer:
    """Rollout values are built by :func:`arbitrage.labelling.rollout.load_scorer`, never here."""
    if options.gold_answers is None:
        raise ConfigError(NO_GOLD_ANSWERS)
    raise ConfigError("Monte-Carlo rollout values are built by arbitrage.labelling.rollout.load_scorer")


ScorerFactory = Callable[[str, ScorerOptions], StepScorer]  # (the spec after "scheme:", options) -> scorer

SCORERS: dict[str, ScorerFactory] = {
    "judge": _judge,
    "judge+arith": _judge_arith,
    "arith": _arith,
    "hf": _hf,
    "http": _http,
    "mc": _mc,
}


def load_scorer(
    spec: str, options: ScorerOptions | None = None, *, scorers: Mapping[str, ScorerFactory] = SCORERS
) -> StepScorer:
    """Build the scorer a spec names (see the module docstring for the forms) from ``scorers``."""
    if not spec or not spec.strip():
        raise ConfigError("Empty PRM spec")
    scheme, _, rest = spec.strip().partition(":")
    try:
        factory = scorers[scheme]
    except KeyError:
        raise ConfigError(
            f"Unknown PRM {spec!r}: the spec starts with one of {', '.join(scorers)} (e.g. {DEFAULT_PRM})"
        ) from None
    return factory(rest, options or ScorerOptions())
