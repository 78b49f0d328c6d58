"""Final-answer extraction from solution text (grading against gold: :mod:`arbitrage.grading`)."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced braces), or None if there is none."""
    result = None
    for match in _BOXED.finditer(text):
        depth = 1
        i = match.end()
        start = i
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            result = text[start : i - 1].strip()
    return result


def has_boxed_answer(text: str) -> bool:
    return extract_boxed(text) is not None


def extract_answer(text: str) -> str | None:
    """The final answer of a solution: the last ``\\boxed{}``; else a GSM8K-style ``#### N``, an
    "answer is N" phrase, or the last number in the text."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    marker = re.search(r"####\s*(.+)", text)
    if marker:
        return marker.group(1).strip()
    phrase = re.findall(r"answer is[:\s]*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", text, flags=re.IGNORECASE)
    if phrase:
        return phrase[-1].replace(",", "")
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None
