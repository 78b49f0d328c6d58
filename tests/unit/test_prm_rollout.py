"""Monte-Carlo rollout values on scripted generators: share of completions reaching the gold answer."""

from __future__ import annotations

import pytest

from arbitrage.answer import extract_answer, has_boxed_answer
from arbitrage.backends.base import FinishReason, Generator, StepContext, StepParams
from arbitrage.backends.scripted import ScriptedGenerator
from arbitrage.errors import ConfigError, ScorerError
from arbitrage.grading import answers_match
from arbitrage.labelling.rollout import Completion, RolloutScorer, complete
from arbitrage.seeds import sample_seed

Q = "How many apples?"


def test_numeric_answers() -> None:
    # rollouts compare answers with evaluation's grading (the numbers an answer states, as before)
    assert answers_match("$1,200", "1200")
    assert answers_match("\\text{12 apples}", "12")
    assert answers_match("25\\%", "25")
    assert answers_match("3/4", "0.75")
    assert not answers_match("none", "8")
    assert answers_match("\\$8.00", "8") and not answers_match("9", "8") and not answers_match(None, "8")
    assert answers_match("Paris", "paris")


def test_complete_stops_at_a_boxed_answer() -> None:
    def script(ctx: StepContext) -> tuple[str, FinishReason]:
        return (f"step {len(ctx.steps)}" if len(ctx.steps) < 3 else "\\boxed{8}"), FinishReason.STEP

    gen = ScriptedGenerator("g", script)
    done = complete(gen, Q, ["given"], StepParams())
    assert done.steps == ("step 1", "step 2", "\\boxed{8}") and done.answer == "8"
    assert complete(gen, Q, ["so \\boxed{5}"], StepParams()).steps == ()  # already answered


def test_rollout_value_is_the_share_of_right_completions() -> None:
    calls: list[tuple[float, int | None]] = []

    class Gen(ScriptedGenerator):
        def generate_step(self, context: StepContext, params: StepParams):  # type: ignore[no-untyped-def]
            calls.append((params.temperature, params.seed))
            return super().generate_step(context, params)

    # greedy and the first sample reach 8; the others 7 (the answer depends on the sampling seed)
    def script(ctx: StepContext) -> tuple[str, FinishReason]:
        temperature, seed = calls[-1]
        right = temperature == 0 or seed == sample_seed(0, Q, 1, 1)
        return ("\\boxed{8}" if right else "\\boxed{7}"), FinishReason.STEP

    scorer = RolloutScorer(Gen("g", script), {Q: "8"}, rollouts=4, temperature=0.9)
    result = scorer.score(Q, ["3 + 5 = 8"])
    assert result.rewards == (0.5,) and result.info["answers"] == ["8", "8", "7", "7"]
    assert [t for t, _ in calls] == [0.0, 0.9, 0.9, 0.9]
    with pytest.raises(ScorerError, match="gold answer"):
        scorer.score("Another question?", ["x"])
    with pytest.raises(ConfigError):
        RolloutScorer(Gen("g", script), {}, rollouts=0)


def test_sampled_rollouts_use_the_shared_seed_rule() -> None:
    seeds: list[int | None] = []

    class Gen(ScriptedGenerator):
        def generate_step(self, context: StepContext, params: StepParams):  # type: ignore[no-untyped-def]
            seeds.append(params.seed)
            return super().generate_step(context, params)

    scorer = RolloutScorer(
        Gen("g", lambda ctx: ("\\boxed{8}", FinishReason.STEP)), {Q: "8"}, rollouts=3, seed=5
    )
    scorer.score(Q, ["one", "two"])
    assert seeds == [None, sample_seed(5, Q, 2, 1), sample_seed(5, Q, 2, 2)]


def old_complete(
    generator: Generator, question: str, steps: list[str], params: StepParams, max_steps: int, max_tokens: int
) -> Completion:
    """The greedy completion as rollouts wrote it before they ran on the engine (the reference)."""
    solution = list(steps)
    new: list[str] = []
    tokens = 0
    if not (steps and has_boxed_answer(steps[-1])):
        for _ in range(max_steps):
            out = generator.generate_step(StepContext(question, tuple(solution)), params)
            tokens += out.tokens
            if out.text:
                solution.append(out.text)
                new.append(out.text)
            if out.finish_reason == FinishReason.EOS or has_boxed_answer(out.text) or tokens >= max_tokens:
                break
    return Completion(tuple(new), extract_answer("\n\n".join(solution)), tokens, 0.0)


def counting(ctx: StepContext) -> tuple[str, FinishReason]:
    n = len(ctx.steps)
    return (f"so the total is \\boxed{{{n}}}" if n == 5 else f"we add {n} and {n} more"), FinishReason.STEP


def ending(ctx: StepContext) -> tuple[str, FinishReason]:
    n = len(ctx.steps)
    return (
        (f"The answer is {n * 10}", FinishReason.EOS) if n == 3 else (f"{n} + 1 = {n + 1}", FinishReason.STEP)
    )


@pytest.mark.parametrize(
    ("script", "prefix", "max_steps", "max_tokens"),
    [
        (counting, [], 12, 600),  # stops at the boxed answer
        (counting, ["given", "also given"], 12, 600),  # from a prefix
        (counting, ["so \\boxed{5}"], 12, 600),  # the prefix is already answered: nothing to write
        (counting, [], 2, 600),  # step limit
        (counting, [], 12, 9),  # token limit
        (ending, ["start"], 12, 600),  # the model ends its answer
        (["a b", "c d e", "f", ("", FinishReason.EOS)], [], 12, 600),  # an empty final step
    ],
)
def test_a_rollout_on_the_engine_equals_the_old_greedy_completion(
    script: object, prefix: list[str], max_steps: int, max_tokens: int
) -> None:
    params = StepParams()
    new = complete(ScriptedGenerator("g", script), Q, prefix, params, max_steps, max_tokens)  # type: ignore[arg-type]
    old = old_complete(ScriptedGenerator("g", script), Q, prefix, params, max_steps, max_tokens)  # type: ignore[arg-type]
    assert (new.steps, new.answer, new.tokens) == (old.steps, old.answer, old.tokens)
    assert new.steps or prefix  # every case writes or starts from something


def test_the_mc_spec_is_built_on_the_labelling_side(monkeypatch: pytest.MonkeyPatch) -> None:
    from arbitrage.backends import loader
    from arbitrage.labelling.rollout import load_scorer
    from arbitrage.prm.arithmetic import ArithmeticVerifier
    from arbitrage.prm.registry import ScorerOptions
    from arbitrage.prm.registry import load_scorer as load_prm_scorer

    gold = {Q: "8"}
    loaded: list[str] = []

    def fake_load(spec: str, options: object = None) -> Generator:
        loaded.append(spec)
        return ScriptedGenerator(spec, ["\\boxed{8}"])

    monkeypatch.setattr(loader, "load_generator", fake_load)
    scorer = load_scorer("mc:tiny", ScorerOptions(gold_answers=gold, rollouts=2))
    assert isinstance(scorer, RolloutScorer) and scorer.rollouts == 2 and loaded == ["tiny"]
    assert isinstance(load_scorer("arith"), ArithmeticVerifier)  # every PRM registry spec as well
    with pytest.raises(ConfigError, match="need gold answers"):
        load_scorer("mc:tiny", ScorerOptions())
    with pytest.raises(ConfigError, match="needs a model"):
        load_scorer("mc:", ScorerOptions(gold_answers=gold))
    with pytest.raises(ConfigError, match="labelling"):  # the PRM registry below the engine cannot
        load_prm_scorer("mc:tiny", ScorerOptions(gold_answers=gold))
    assert loaded == ["tiny"]
