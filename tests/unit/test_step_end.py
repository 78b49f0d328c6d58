import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbitrage.backends.base import StepParams
from arbitrage.backends.stepping import entropy, find_step_end, log_softmax, pick_token, row_summaries


@pytest.mark.parametrize(
    ("text", "sep", "expected"),
    [
        ("Add 2 and 3.", "\n\n", None),
        ("Add 2 and 3.\n", "\n\n", None),  # half a separator is not an end
        ("Add 2 and 3.\n\nThen", "\n\n", 12),  # a token straddling the separator
        ("Add 2 and 3.\n\n", "\n\n", 12),
        ("\n\nAdd 2.\n\n", "\n\n", 8),  # leading blank lines are not a step end
        ("\n\n", "\n\n", None),
        ("a\nb", "\n", 1),
        ("x ### y", "###", 2),
    ],
)
def test_find_step_end(text: str, sep: str, expected: int | None) -> None:
    assert find_step_end(text, sep) == expected


def test_log_softmax_normalises() -> None:
    import numpy as np

    out = log_softmax(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    assert np.exp(out).sum() == pytest.approx(1.0)
    assert int(np.argmax(out)) == 2


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31), scale=st.sampled_from([0.5, 3.0, 30.0]), size=st.sampled_from([2, 50, 151936])
)
def test_the_greedy_fast_path_gives_the_float64_log_softmax_figures(
    seed: int, scale: float, size: int
) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(size) * scale).astype(np.float32)
    token, logprob, token_entropy = pick_token(logits, StepParams(temperature=0), rng)
    reference = log_softmax(logits)
    assert token == int(np.argmax(reference))
    assert logprob == pytest.approx(float(reference[token]), abs=1e-5)
    assert token_entropy == pytest.approx(entropy(reference), abs=1e-5)
    given_token = int(rng.integers(size))
    lps, greedy, greedy_lps, entropies = row_summaries(logits[None, :], [given_token])
    assert greedy == [token] and greedy_lps == [logprob] and entropies == [token_entropy]
    assert lps[0] == pytest.approx(float(reference[given_token]), abs=1e-5)


def test_sampling_draws_from_the_tempered_distribution_and_reports_its_figures() -> None:
    import numpy as np

    logits = np.log(np.array([0.7, 0.2, 0.1], dtype=np.float32))
    rng = np.random.default_rng(0)
    picks = [pick_token(logits, StepParams(temperature=1.0), rng) for _ in range(4000)]
    share = np.bincount([p[0] for p in picks], minlength=3) / len(picks)
    assert share == pytest.approx([0.7, 0.2, 0.1], abs=0.03)
    token, logprob, token_entropy = picks[0]
    assert logprob == pytest.approx(float(np.log([0.7, 0.2, 0.1][token])), abs=1e-6)
    assert token_entropy == pytest.approx(
        float(-(np.array([0.7, 0.2, 0.1]) * np.log([0.7, 0.2, 0.1])).sum()), abs=1e-6
    )


def _fake_model(pieces: list[str], end_at: int | None = None):  # type: ignore[no-untyped-def]
    """A token stream over ``pieces`` (token i decodes to pieces[i]); token ``end_at`` is the end token."""
    fed: list[int] = []
    position = [0]

    def next_token() -> tuple[int, float, float]:
        token = position[0]
        position[0] += 1
        return token, -0.1 * (token + 1), 0.5

    return next_token, (lambda t: t == end_at), (lambda ids: "".join(pieces[i] for i in ids)), fed


def test_decode_step_stops_at_a_separator_split_across_tokens() -> None:
    from arbitrage.backends.base import FinishReason
    from arbitrage.backends.stepping import decode_step

    next_token, is_end, detok, fed = _fake_model(["We add", " 2.\n", "\nNext", " step"])
    step = decode_step(10, "\n\n", next_token, is_end, detok, fed.append)
    assert step.text == "We add 2." and step.finish == FinishReason.STEP and step.tokens == 3
    assert step.logprobs == (-0.1, -0.2, -0.30000000000000004) and step.entropies == (0.5, 0.5, 0.5)
    assert fed == [0, 1]  # the token that carried the separator is not fed back


def test_decode_step_end_token_and_budget() -> None:
    from arbitrage.backends.base import FinishReason
    from arbitrage.backends.stepping import decode_step

    next_token, is_end, detok, fed = _fake_model(["So", " 4", "<eos>"], end_at=2)
    step = decode_step(10, "\n\n", next_token, is_end, detok, fed.append)
    assert step.text == "So 4" and step.finish == FinishReason.EOS and step.tokens == 3
    next_token, is_end, detok, fed = _fake_model(["a", "b", "c", "d"])
    step = decode_step(3, "\n\n", next_token, is_end, detok, fed.append)
    assert step.text == "abc" and step.finish == FinishReason.LENGTH and step.tokens == 3
    assert fed == [0, 1]  # the last token within the budget is not evaluated: no step follows it
