"""The judge PRM on the real SmolLM2-135M GGUF: rewards, KV-cache reuse between consecutive steps, and
the judge served over HTTP to the remote scorer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arbitrage.backends.llamacpp import ALIGNED_CHUNK, LlamaCppGenerator
from arbitrage.prm.judge import JUDGE_PROMPTS, JudgeScorer
from arbitrage.prm.registry import load_scorer
from arbitrage.prm.remote import RemoteScorer
from arbitrage.prm.serve import create_pooling_app

from ..prm_server import serve
from .conftest import load

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"
STEPS = ["Tom starts with 3 apples.", "He buys 5 more, so 3 + 5 = 8 apples.", "The answer is \\boxed{8}."]


@pytest.fixture
def judge() -> Iterator[JudgeScorer]:
    scorer = JudgeScorer(load("smollm2-135m"), JUDGE_PROMPTS["strict"])
    yield scorer
    scorer.close()


def test_rewards_are_probabilities_from_yes_no(judge: JudgeScorer) -> None:
    result = judge.score(QUESTION, STEPS, only_last=False)
    assert len(result.rewards) == 3 and result.first == 0
    assert all(0.0 < r < 1.0 for r in result.rewards)
    assert result.info["steps"][0]["yes_no_mass"] > 0.01  # the judge does answer Yes/No
    assert judge.name == "judge(smollm2-135m, strict)"
    # only_last gives the last step's reward alone, the same number as scoring every step
    last = judge.score(QUESTION, STEPS)
    assert last.rewards == pytest.approx(result.rewards[-1:], abs=1e-4) and last.first == 2


def test_prompt_puts_steps_before_the_question_to_the_judge(judge: JudgeScorer) -> None:
    model = judge.model
    assert isinstance(model, LlamaCppGenerator)
    text = model.llm.detokenize(judge.prompt_tokens(QUESTION, STEPS), special=True).decode()
    assert text.index(QUESTION) < text.index("Step 1: Tom starts") < text.index("Step 3: The answer")
    assert text.index("Step 3: The answer") < text.index("Check Step 3 only")
    assert text.rstrip().endswith("assistant")  # the judge's answer starts right after
    # the token prefix of k steps is a prefix of the tokens for k+1 steps, up to the judge's question
    shorter = judge.prompt_tokens(QUESTION, STEPS[:2])
    longer = judge.prompt_tokens(QUESTION, STEPS)
    ask_tokens = len(model.tokenize(JUDGE_PROMPTS["strict"].ask.replace("{n}", "2")))
    common = len(shorter) - ask_tokens - 10
    assert shorter[:common] == longer[:common]


@pytest.mark.parametrize("determinism", ["off", "aligned"])
def test_consecutive_steps_reuse_the_kv_cache(determinism: str) -> None:
    judge = JudgeScorer(load("smollm2-135m", determinism=determinism), JUDGE_PROMPTS["strict"])
    try:
        model = judge.model
        # aligned mode reuses whole 32-token chunks only: the partial chunk before the new text is
        # evaluated again (so a score does not depend on what the cache held)
        slack = ALIGNED_CHUNK - 1 if determinism == "aligned" else 0
        first = judge.score(QUESTION, STEPS[:1])
        assert first.prefill_tokens == first.prompt_tokens  # cold cache
        second = judge.score(QUESTION, STEPS[:2])
        head = len(judge.head_tokens(QUESTION))
        step1 = len(model.tokenize(f"Step 1: {STEPS[0]}\n\n"))
        step2 = len(model.tokenize(f"Step 2: {STEPS[1]}\n\n"))
        closing = second.prompt_tokens - head - step1 - step2  # the question to the judge, the turn markers
        # prefilled: the new step and the closing question; nothing of the problem or of step 1
        assert step2 <= second.prefill_tokens <= step2 + closing + slack
        assert second.prefill_tokens < second.prompt_tokens - head + slack
        # the oracle's other candidate for the same prefix likewise prefills only its own step and the closing
        other = judge.score(QUESTION, [STEPS[0], "He buys 5 more, so 3 + 5 = 9 apples."])
        other_step = len(model.tokenize("Step 2: He buys 5 more, so 3 + 5 = 9 apples.\n\n"))
        assert other.prefill_tokens <= other_step + closing + slack
    finally:
        judge.close()


def test_judge_with_its_own_check(judge: JudgeScorer) -> None:
    from dataclasses import replace

    checking = JudgeScorer(load("smollm2-135m"), replace(JUDGE_PROMPTS["recompute"], check_tokens=12))
    try:
        result = checking.score(QUESTION, STEPS[:2])
        assert 0.0 < result.last < 1.0
        assert isinstance(result.info["check"], str) and result.info["check"]
        assert result.prefill_tokens > 12  # the prompt, then one token per written token, then the verdict
    finally:
        checking.close()


def test_same_file_as_target_gets_its_own_instance() -> None:
    target = load("smollm2-135m")
    try:
        scorer = load_scorer("judge:smollm2-135m")
        try:
            assert scorer.model is not target and scorer.model.llm is not target.llm  # type: ignore[attr-defined]
        finally:
            scorer.close()
    finally:
        target.close()


def test_judge_served_over_http_matches_local_scores(judge: JudgeScorer) -> None:
    local = judge.score(QUESTION, STEPS, only_last=False).rewards
    with serve(create_pooling_app(judge, "smol-judge")) as url:
        remote = RemoteScorer(url, "smol-judge").score(QUESTION, STEPS)
    assert remote.rewards == pytest.approx(local, abs=1e-4)
