"""Benchmark problem sets as ``(id, question, gold answer)``.

The named datasets are the JSON-lines files in the shared data folder (``../shared/datasets`` from the
project root, or ``$ARBITRAGE_DATA_DIR``). Users' own files load the same way with ``--data-file``: the
question and answer fields are detected from the usual names unless given. A malformed line is
reported with its file and line number and skipped, never silently.

Layering: this module reads files only (it imports nothing of arbitrage but ``errors`` and
``settings``), so it sits below the engine, the router and the rest of ``evaluation``; router
collection may import it. Keep it that way (``evaluation/__init__`` imports nothing either).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.settings import load_settings

logger = logging.getLogger(__name__)

QUESTION_FIELDS = ("question", "problem", "prompt", "input")
ANSWER_FIELDS = ("answer", "final_answer", "gold", "target", "solution")


@dataclass(frozen=True, slots=True)
class Problem:
    """One benchmark problem."""

    id: str  # stable id within its dataset (the file's own id, else the 0-based line index)
    question: str
    answer: str  # gold final answer (LaTeX or plain number)
    dataset: str  # dataset name or file stem
    solution: str | None = None  # gold worked solution where the file has one


@dataclass(slots=True)
class LoadReport:
    """Problems loaded from a file, and the lines skipped with why."""

    problems: list[Problem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file:line: reason"


def _gsm8k(row: dict[str, Any], index: int) -> Problem:
    answer = str(row["answer"])
    if "####" not in answer:
        raise ValueError("no '#### ' final answer in the 'answer' field")
    gold = answer.split("####")[-1].strip().replace(",", "")
    return Problem(str(row.get("id", index)), str(row["question"]), gold, "gsm8k", answer)


def _math500(row: dict[str, Any], index: int) -> Problem:
    return Problem(
        str(row.get("unique_id", index)),
        str(row["problem"]),
        str(row["answer"]),
        "math500",
        row.get("solution"),
    )


def _olympiad(row: dict[str, Any], index: int) -> Problem:
    answers = row["final_answer"]
    if isinstance(answers, str):
        answers = [answers]
    if not answers:
        raise ValueError("empty 'final_answer'")
    question = str(row["question"])
    context = row.get("context")
    if context and str(context) != "None":
        question = f"{context}\n\n{question}"
    gold = ", ".join(str(a).strip().strip("$") for a in answers)
    return Problem(str(row.get("id", index)), question, gold, "olympiadbench", None)


def _plain(name: str) -> Callable[[dict[str, Any], int], Problem]:
    def load(row: dict[str, Any], index: int) -> Problem:
        answer = row["answer"]
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)
        question = row.get("question") or row["problem"]
        return Problem(str(row.get("id", index)), str(question), str(answer), name, row.get("solution"))

    return load


DATASETS: dict[str, tuple[str, Callable[[dict[str, Any], int], Problem]]] = {
    "gsm8k": ("gsm8k_test.jsonl", _gsm8k),
    "gsm8k-train": ("gsm8k_train.jsonl", _gsm8k),
    "math500": ("math500_test.jsonl", _math500),
    "olympiadbench": ("olympiadbench_test.jsonl", _olympiad),
    "aime24": ("aime24_test.jsonl", _plain("aime24")),
    "amc23": ("amc23_test.jsonl", _plain("amc23")),
}


def default_data_dir() -> Path:
    """``$ARBITRAGE_DATA_DIR``, else ``shared/datasets`` beside the project checkout."""
    env = load_settings().data_dir
    if env is not None:
        return env
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "datasets"
        if (parent / "pyproject.toml").is_file() and candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "datasets"


def _detect(row: dict[str, Any], names: tuple[str, ...], what: str, path: Path) -> str:
    for name in names:
        if name in row:
            return name
    raise ConfigError(f"{path}: cannot find the {what} field (tried {', '.join(names)}); pass --{what}-field")


def _read_jsonl(path: Path, parse: Callable[[dict[str, Any], int], Problem]) -> LoadReport:
    if not path.is_file():
        raise ConfigError(f"Dataset file not found: {path}")
    report = LoadReport()
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                problem = parse(row, lineno - 1)
                if not problem.question.strip():
                    raise ValueError("empty question")
                report.problems.append(problem)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                report.skipped.append(f"{path}:{lineno}: {reason}")
    for entry in report.skipped:
        logger.warning("skipped malformed line %s", entry)
    return report


def load_dataset(name: str, data_dir: Path | None = None) -> LoadReport:
    """Load a named dataset (see ``DATASETS``)."""
    try:
        filename, parse = DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown dataset {name!r} (known: {', '.join(DATASETS)}); or use --data-file"
        ) from None
    return _read_jsonl((data_dir or default_data_dir()) / filename, parse)


def load_file(path: Path, question_field: str | None = None, answer_field: str | None = None) -> LoadReport:
    """Load a user's JSON-lines file, detecting the question/answer fields from the first valid row."""
    fields: dict[str, str] = {}

    def parse(row: dict[str, Any], index: int) -> Problem:
        if not fields:
            fields["q"] = question_field or _detect(row, QUESTION_FIELDS, "question", path)
            fields["a"] = answer_field or _detect(row, ANSWER_FIELDS, "answer", path)
        answer = row[fields["a"]]
        if isinstance(answer, list):
            answer = ", ".join(str(a) for a in answer)
        if fields["a"] == "answer" and isinstance(answer, str) and "####" in answer:
            answer = answer.split("####")[-1].strip().replace(",", "")
        return Problem(str(row.get("id", index)), str(row[fields["q"]]), str(answer), path.stem, None)

    return _read_jsonl(path, parse)


def select(problems: list[Problem], offset: int = 0, limit: int | None = None) -> list[Problem]:
    """Problems ``offset .. offset+limit`` in file order."""
    if offset < 0:
        raise ConfigError(f"--offset must be >= 0, got {offset}")
    if limit is not None and limit <= 0:
        raise ConfigError(f"--limit must be positive, got {limit}")
    return problems[offset : None if limit is None else offset + limit]


def load_problems(
    dataset: str | None,
    data_file: Path | None,
    question_field: str | None = None,
    answer_field: str | None = None,
    data_dir: Path | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[str, list[Problem]]:
    """The selected problems of a named ``dataset`` or of a ``data_file`` (exactly one), and a name
    for them; malformed lines are logged as warnings and skipped."""
    if (dataset is None) == (data_file is None):
        raise ConfigError("Give exactly one of --dataset NAME or --data-file PATH")
    if data_file is not None:
        report = load_file(data_file, question_field, answer_field)
        name = data_file.stem
    else:
        assert dataset is not None
        report = load_dataset(dataset, data_dir)
        name = dataset
    problems = select(report.problems, offset, limit)
    if not problems:
        raise ConfigError(f"No problems selected from {name} (offset {offset}, limit {limit})")
    return name, problems
