"""The step-labelled evaluation set for PRMs: real steps, each labelled right (1) or wrong (0).

Two sources (``kind`` of a row):

- **corrupted gold steps** from GSM8K train. A gold solution is lines with calculator annotations
  (``48/2 = <<48/2=24>>24 clips``) and ``#### answer``; a line is a step and the annotations are removed.
  For a chosen annotated step of a problem the set holds the gold step (``gold``, label 1) and two wrong
  versions with the same prefix of gold steps: ``corrupt-result``, the stated result changed
  (``48/2 = 26``: an arithmetic slip), and ``corrupt-operand``, one operand changed and the result
  recomputed (``48/3 = 16``: consistent arithmetic on a wrong quantity, the error an equation checker
  cannot see).
- **real draft steps** (``draft``): the draft model writes a solution; one step with a number in it is
  chosen, and its label is whether the target model, continuing greedily from the solution through
  that step, reaches the gold answer (a one-rollout Monte-Carlo label: noisy, but it is what a step
  is worth to the solve). A chosen final step is labelled by its own answer. These rows are made by
  solving (:func:`arbitrage.labelling.evalset.build_draft_rows`); this module holds the format.

Rows are JSON lines (see :class:`LabelledStep`); ``benchmarks/build_prm_eval.py`` rebuilds the set.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError

_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# real-draft / real-target: collected steps labelled by whether continuing from them reaches the gold
# answer (benchmarks/real_steps.py)
KINDS = ("gold", "corrupt-result", "corrupt-operand", "draft", "real-draft", "real-target")


@dataclass(frozen=True, slots=True)
class LabelledStep:
    """One step to score, in context, with its label."""

    id: str  # unique row id, e.g. "gsm8k-train-0123/s2/corrupt-result"
    problem_id: str  # rows of one problem share it (and, scored in order, the judge's KV cache)
    question: str
    prefix: tuple[str, ...]  # the solution's steps before the scored one
    step: str  # the scored step
    label: int  # 1: right, 0: wrong
    kind: str  # one of KINDS
    gold_answer: str  # the problem's gold final answer
    meta: dict[str, Any] = field(default_factory=dict)  # how the row was made (corruption, rollout answers)

    @property
    def steps(self) -> tuple[str, ...]:
        """The solution to score: prefix then the step."""
        return (*self.prefix, self.step)


def strip_annotations(line: str) -> str:
    return _ANNOTATION.sub("", line).strip()


def gold_answer(answer: str) -> str:
    return answer.split("####")[-1].strip().replace(",", "")


def _format_like(value: Fraction, like: str) -> str | None:
    """``value`` written as ``like`` is (integer, or with as many decimals); None if that is inexact."""
    places = len(like.split(".")[1]) if "." in like else 0
    scaled = value * 10**places
    if scaled.denominator != 1:
        return None
    if places == 0:
        return str(int(value))
    return f"{float(value):.{places}f}"


def _nice(value: Fraction) -> str | None:
    """An integer, or a number with at most two decimals, as text; None otherwise."""
    for places in (0, 1, 2):
        if (value * 10**places).denominator == 1:
            return str(int(value)) if places == 0 else f"{float(value):.{places}f}"
    return None


def _wrong_numbers(stated: str, rng: random.Random) -> list[str]:
    value = Fraction(stated)
    unit = Fraction(1) if "." not in stated else Fraction(1, 10 ** len(stated.split(".")[1]))
    candidates = [
        value + unit,
        value - unit,
        value + 2 * unit,
        value - 2 * unit,
        value + 10 * unit,
        value * 2,
    ]
    if value >= 20:
        candidates += [value + 10, value - 10, value * Fraction(11, 10)]
    out = []
    for c in candidates:
        text = _format_like(c, stated)
        if text is not None and c != value and (c > 0 or value <= 0) and text not in out:
            out.append(text)
    rng.shuffle(out)
    return out


def corrupt_result(line: str, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """The step with the stated result of its last calculation changed (the calculation kept)."""
    matches = list(_ANNOTATION.finditer(line))
    if not matches:
        return None
    m = matches[-1]
    result = m.group(2).strip()
    after = line[m.end() :]
    if (
        not _NUMBER.fullmatch(result)
        or not after.startswith(result)
        or after[len(result) : len(result) + 1].isdigit()
    ):
        return None
    options = _wrong_numbers(result, rng)
    if not options:
        return None
    wrong = options[0]
    new = line[: m.end()] + wrong + after[len(result) :]
    return strip_annotations(new), {"changed": "result", "from": result, "to": wrong}


def corrupt_operand(line: str, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """The step with one operand of its last calculation changed and the result recomputed."""
    import sympy

    matches = list(_ANNOTATION.finditer(line))
    if not matches:
        return None
    m = matches[-1]
    expr, result = m.group(1), m.group(2).strip()
    after = line[m.end() :]
    if not _NUMBER.fullmatch(result) or not after.startswith(result):
        return None
    before = line[: m.start()]
    tail = re.search(r"\s*=\s*\$?\s*$", before)
    if not tail:
        return None  # the calculation is not written out in the visible text
    visible = before[: tail.start()]
    numbers = list(_NUMBER.finditer(expr))
    if not numbers:
        return None
    pattern = r"[^\d\n]{0,8}?".join(re.escape(n.group(0)) for n in numbers) + r"\s*\)?$"
    span = re.search(pattern, visible)
    if not span:
        return None
    visible_numbers = [n for n in _NUMBER.finditer(visible) if n.start() >= span.start()]
    if len(visible_numbers) != len(numbers):
        return None
    order = list(range(len(numbers)))
    rng.shuffle(order)
    for index in order:
        operand = numbers[index].group(0)
        for wrong_operand in _wrong_numbers(operand, rng):
            new_expr = expr[: numbers[index].start()] + wrong_operand + expr[numbers[index].end() :]
            try:
                value = sympy.sympify(new_expr.replace("x", "*").replace("^", "**"), rational=True)
            except (sympy.SympifyError, SyntaxError, TypeError, ZeroDivisionError):
                continue
            if not value.is_Rational:
                continue
            new_result = _nice(Fraction(int(value.p), int(value.q)))
            if new_result is None or new_result == result or Fraction(new_result) <= 0:
                continue
            vn = visible_numbers[index]
            new_visible = visible[: vn.start()] + wrong_operand + visible[vn.end() :]
            new = new_visible + tail.group(0) + new_result + after[len(result) :]
            meta = {"changed": "operand", "operand": operand, "to": wrong_operand, "result": new_result}
            return strip_annotations(new), meta
    return None


def build_corrupted(problems: Sequence[dict[str, str]], n_problems: int, seed: int = 0) -> list[LabelledStep]:
    """Gold and corrupted steps for ``n_problems`` problems drawn (seeded) from ``problems``.

    ``problems`` are GSM8K rows (``question``, ``answer``); their position is the row id.
    """
    rng = random.Random(seed)
    order = list(range(len(problems)))
    rng.shuffle(order)
    rows: list[LabelledStep] = []
    used = 0
    for index in order:
        if used >= n_problems:
            break
        problem = problems[index]
        lines = [ln for ln in problem["answer"].split("\n") if ln.strip() and not ln.startswith("####")]
        candidates = [k for k, ln in enumerate(lines) if corrupt_result(ln, random.Random(0))]
        if not candidates:
            continue
        k = rng.choice(candidates)
        pid = f"gsm8k-train-{index:04d}"
        prefix = tuple(strip_annotations(ln) for ln in lines[:k])
        common: dict[str, Any] = {"problem_id": pid, "question": problem["question"], "prefix": prefix,
                  "gold_answer": gold_answer(problem["answer"])}  # fmt: skip
        source = {"source": f"gsm8k_train.jsonl row {index}", "step_index": k}
        rows.append(LabelledStep(id=f"{pid}/s{k}/gold", step=strip_annotations(lines[k]), label=1,
                                 kind="gold", meta=source, **common))  # fmt: skip
        for kind, corrupt in (("corrupt-result", corrupt_result), ("corrupt-operand", corrupt_operand)):
            made = corrupt(lines[k], rng)
            if made is not None:
                text, how = made
                rows.append(LabelledStep(id=f"{pid}/s{k}/{kind}", step=text, label=0, kind=kind,
                                         meta={**source, **how}, **common))  # fmt: skip
        used += 1
    return rows


def write_rows(path: Path, rows: Iterable[LabelledStep]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")


def load_rows(path: Path) -> list[LabelledStep]:
    """Read a step-labelled set, with a clear error for a missing file or a malformed row."""
    if not path.is_file():
        raise ConfigError(f"Step-labelled set not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            data["prefix"] = tuple(data["prefix"])
            row = LabelledStep(**data)
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise ConfigError(f"{path}:{number}: not a step-labelled row ({exc})") from exc
        if row.label not in (0, 1):
            raise ConfigError(f"{path}:{number}: label must be 0 or 1, got {row.label!r}")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path} holds no rows")
    return rows
