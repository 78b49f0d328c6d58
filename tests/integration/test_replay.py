"""A replayed run charges what the live run measured: the same steps and the same prefill token counts,
call by call, on real models (smollm2-135m as draft and target, each its own KV cache).

The first run is live and fills a step cache; the second, with freshly loaded models, replays every
step. A live call prefills from its model's KV cache; a replay must leave the cache as that call would
have, or the next call prefills more (the bug this guards: 107 prefill tokens per problem live vs 554
replayed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from arbitrage.backends.base import StepOutput, StepParams
from arbitrage.backends.cache import CachingGenerator, StepCache
from arbitrage.engine import Engine, EngineConfig
from arbitrage.evaluation.datasets import load_problems
from arbitrage.policies import build_policy, policy_options
from tests.integration.conftest import load

pytestmark = pytest.mark.slow


def calls(cache: StepCache, questions: list[str]) -> list[list[StepOutput]]:
    """Solve ``questions`` with fresh models behind ``cache``; every model call's output, per problem."""
    draft, target = load("smollm2-135m"), load("smollm2-135m")
    try:
        d, t = CachingGenerator(draft, cache, "d"), CachingGenerator(target, cache, "t")
        policy = build_policy("random", policy_options("random", p=0.5, seed=3))
        config = EngineConfig(step=StepParams(max_step_tokens=32), max_steps=5, max_total_tokens=160)
        engine = Engine(d, t, policy, config)
        out = []
        for question in questions:
            trace = engine.solve(question)
            out.append([o for s in trace.steps for o in (s.draft, s.target) if o is not None])
        return out
    finally:
        draft.close()
        target.close()


def test_a_replayed_run_prefills_what_the_live_run_did(tmp_path: Path) -> None:
    _, problems = load_problems("gsm8k", None, None, None, None, 0, 2)
    questions = [p.question for p in problems]
    cache = StepCache(tmp_path / "steps.sqlite")
    live = calls(cache, questions)
    replayed = calls(cache, questions)
    cache.close()
    for live_calls, replay_calls in zip(live, replayed, strict=True):
        assert [o.text for o in replay_calls] == [o.text for o in live_calls]
        assert all(not o.extra.get("replayed") for o in live_calls)
        assert all(o.extra.get("replayed") and o.extra["replay_prefill"] == "live" for o in replay_calls)
        assert [o.prefill_tokens for o in replay_calls] == [o.prefill_tokens for o in live_calls]
        assert [o.decode_seconds for o in replay_calls] == [o.decode_seconds for o in live_calls]
    assert sum(len(c) for c in live) >= 4  # both models were called, on more than one step
