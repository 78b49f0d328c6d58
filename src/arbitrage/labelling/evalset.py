"""The real draft steps of the PRM evaluation set (``kind`` ``draft``, :mod:`arbitrage.prm.evalset`).

The draft writes a solution, one step is drawn, and the target, continuing from it with the engine
(:func:`arbitrage.labelling.rollout.complete`), says whether it leads to the gold answer: labelling by
solving, so it lives here and not beside the set's format in the PRM package.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from arbitrage.answer import has_boxed_answer
from arbitrage.backends.base import Generator, StepParams
from arbitrage.grading import grade_answer
from arbitrage.labelling.rollout import complete
from arbitrage.prm.evalset import LabelledStep, gold_answer


def build_draft_rows(
    draft: Generator,
    target: Generator,
    problems: Sequence[tuple[int, dict[str, str]]],
    seed: int = 0,
    params: StepParams | None = None,
    max_steps: int = 8,
    max_tokens: int = 600,
    on_row: Callable[[LabelledStep], None] | None = None,
) -> list[LabelledStep]:
    """Real draft steps labelled by whether the target, continuing from them, reaches the gold answer.

    ``problems`` are (row index, GSM8K row) pairs. For each, the draft writes a solution (greedy, up to
    ``max_steps`` steps); one step containing a digit is drawn (seeded per problem); the label is 1 if
    the step is the final one and its answer is right, or if the target's greedy continuation from the
    solution through that step reaches the gold answer; else 0.
    """
    params = params or StepParams(max_step_tokens=160)
    rows = []
    for index, problem in problems:
        question, gold = problem["question"], gold_answer(problem["answer"])
        written = complete(draft, question, (), params, max_steps=max_steps, max_tokens=max_tokens)
        candidates = [k for k, s in enumerate(written.steps) if re.search(r"\d", s)]
        if not candidates:
            continue
        k = random.Random(f"{seed}|{index}").choice(candidates)
        steps = written.steps[: k + 1]
        meta: dict[str, Any] = {
            "source": f"gsm8k_train.jsonl row {index}",
            "step_index": k,
            "draft": draft.name,
            "draft_steps": len(written.steps),
            "draft_answer": written.answer,
            "draft_correct": grade_answer(written.answer, gold).correct,
        }
        if k == len(written.steps) - 1 and has_boxed_answer(steps[-1]):
            label = int(grade_answer(written.answer, gold).correct)
            meta["labelled_by"] = "final answer"
        else:
            rollout = complete(target, question, steps, params, max_steps=max_steps, max_tokens=max_tokens)
            label = int(grade_answer(rollout.answer, gold).correct)
            meta.update(
                {"labelled_by": f"greedy continuation by {target.name}", "rollout_answer": rollout.answer}
            )
        row = LabelledStep(
            id=f"gsm8k-train-{index:04d}/s{k}/draft",
            problem_id=f"gsm8k-train-{index:04d}",
            question=question,
            prefix=tuple(steps[:-1]),
            step=steps[-1],
            label=label,
            kind="draft",
            gold_answer=gold,
            meta=meta,
        )
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows
