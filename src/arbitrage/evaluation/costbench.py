"""Measure a draft/target pair's per-token costs on this machine, through the generator protocol only,
so the same measurement runs for llama.cpp, transformers and OpenAI-compatible servers (vLLM, SGLang).

Per model, over ``repeats`` rounds (the median is kept):

- **evaluate**: a fresh question's prompt and a long solution prefix, prefilled in one call:
  ``prefill_seconds / prefill_tokens``;
- **decode**: a step of ``tokens`` tokens written after it (no separator in reach):
  ``decode_seconds / (tokens − 1)`` (the first token comes from the prefill's logits);
- **call**: the seconds of a call that prefills one token and writes one, less one decode;
- **batch_extra** (a model that can verify): the seconds of verifying an 8-token step after a cached
  context, less one decode, per extra token: ``v(n) = decode + (n − 1) · batch_extra``.

The result is a :class:`~arbitrage.costs.CostModel` with ``source="bench"``; ``arbitrage bench-costs``
writes it where ``auto`` and ``report --costs`` find it.
"""

from __future__ import annotations

import logging
import platform
import statistics
import time
from dataclasses import replace

from arbitrage.backends.base import FinishReason, Generator, StepContext, StepOutput, StepParams, Verifier
from arbitrage.costs import CostModel, RoleCosts

logger = logging.getLogger(__name__)

_PREFIX = (
    "Let us work through the problem carefully, one quantity at a time, writing every intermediate "
    "value so that each step can be checked on its own. First we list what is given, then what is "
    "asked, and only then do we compute."
)
_NEVER = "\u0001\u0002"  # a separator no model writes: steps run to their token cap


def _questions(repeats: int) -> list[str]:
    return [
        f"A shop sells {7 + i} boxes of {12 + 3 * i} pencils each and then {5 + i} more loose pencils. "
        f"How many pencils does it sell in total, and what is that number divided by {3 + i}?"
        for i in range(repeats)
    ]


def _role_costs(model: Generator, tokens: int, repeats: int) -> RoleCosts:
    evaluate, decode, call, extra = [], [], [], []
    params = StepParams(separator=_NEVER, max_step_tokens=tokens)
    for question in _questions(repeats):
        context = StepContext(question=question, steps=(_PREFIX,))
        step = model.generate_step(context, params)
        if step.prefill_tokens > 1:
            evaluate.append(step.prefill_seconds / step.prefill_tokens)
        if step.tokens > 1:
            decode.append(step.decode_seconds / (step.tokens - 1))
        # a one-token call after the cached context (its prefill: the token the step left unfed)
        t0 = time.perf_counter()
        model.generate_step(context, replace(params, max_step_tokens=1))
        call.append(time.perf_counter() - t0)
        if isinstance(model, Verifier):  # an 8-token step verified after the (cached) context
            probe = StepOutput(
                text=" So we multiply the boxes by the pencils", finish_reason=FinishReason.LENGTH,
                model="bench", tokens=8,
            )  # fmt: skip
            verification = model.verify_step(context, probe, params)
            if verification.n > 1:
                extra.append((verification.seconds, verification.n))
    d = statistics.median(decode) if decode else float("nan")
    one_call = statistics.median(call) if call else 0.0
    batch_extra = None
    if extra:
        per = [max(0.0, (seconds - d) / n) for seconds, n in extra]  # n verified tokens, n + 1 rows
        batch_extra = statistics.median(per)
    return RoleCosts(
        decode=d,
        evaluate=statistics.median(evaluate) if evaluate else float("nan"),
        call=max(0.0, one_call - d),
        batch_extra=batch_extra,
    )


def measure_costs(draft: Generator, target: Generator, *, tokens: int = 48, repeats: int = 3) -> CostModel:
    """Measure both models' costs (see the module docstring); draft first, then target."""
    logger.info("measuring %s (draft)", draft.name)
    draft_costs = _role_costs(draft, tokens, repeats)
    logger.info("measuring %s (target)", target.name)
    target_costs = _role_costs(target, tokens, repeats)
    return CostModel(
        draft=draft_costs,
        target=target_costs,
        source="bench",
        machine=f"{platform.machine()} {platform.processor() or ''}".strip() + f", {platform.node()}",
        notes=f"{draft.name} -> {target.name}; {repeats} repeats of {tokens} tokens; medians",
    )


def describe_costs(costs: CostModel) -> str:
    """What ``bench-costs`` prints: each model's measured costs, then the two ratios."""
    lines = []
    for role in ("draft", "target"):
        c = getattr(costs, role)
        extra = "-" if c.batch_extra is None else f"{1000 * c.batch_extra:.1f} ms"
        lines.append(
            f"{role:>6}: decode {1000 * c.decode:.1f} ms/token, batched evaluation {1000 * c.evaluate:.2f} "
            f"ms/token, call {1000 * c.call:.1f} ms, small-batch extra {extra}/token"
        )
    lines.append(
        f"draft/target decode cost ratio {costs.ratio:.2f}; verification/decode {costs.verify_ratio:.2f}"
    )
    return "\n".join(lines)
