import json
from pathlib import Path

import pytest

from arbitrage.answer import extract_answer, extract_boxed

CASES = json.loads((Path(__file__).parents[1] / "data" / "answer_cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:30] for c in CASES])
def test_extraction(case: dict) -> None:
    assert extract_boxed(case["text"]) == case["boxed"]
    assert extract_answer(case["text"]) == case["answer"]
