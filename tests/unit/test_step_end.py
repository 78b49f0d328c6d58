import pytest

from arbitrage.backends.llamacpp import find_step_end, log_softmax


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
