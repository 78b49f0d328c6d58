"""Every ``arbitrage`` command shown in README.md and docs/ names commands and flags that exist.

The commands are taken from the shell code blocks (```bash, ```sh, ```console or unlabelled) and from
inline code that starts with ``arbitrage `` or ``.venv/bin/arbitrage ``. For each, the subcommands it
names must exist, every ``--flag`` (and ``-x``) it uses must be an option of that (sub)command, and
``--help`` of that (sub)command must succeed. A command that is meant to fail (an example of an error)
is skipped when its line carries the marker comment ``# docs-test: skip``.

``docs/cli.md`` is left out: it is generated from the app itself (tests/unit/test_docs_current.py).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from arbitrage.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
GENERATED = {ROOT / "docs" / "cli.md"}
DOC_FILES = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))] if p not in GENERATED]
SKIP_MARKER = "docs-test: skip"
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
OPERATOR = re.compile(r"[();<>|&]+")  # shell control and redirection operators end a command


@dataclass(frozen=True, slots=True)
class ShownCommand:
    """One invocation of the CLI as the docs show it."""

    where: str  # "docs/policies.md:42", for the failure message and the test id
    args: tuple[str, ...]  # the words after the program name, as the shell would pass them


def _words(line: str) -> list[str]:
    """Split a shell line into words and operators, dropping a trailing ``# comment``."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # a '#' inside a word (judge:MODEL#PROMPT) is no comment in the shell
    words: list[str] = []
    for word in lexer:
        if word.startswith("#"):
            break
        words.append(word)
    return words


def _invocations(line: str) -> Iterator[tuple[str, ...]]:
    """The argument tuples of every ``arbitrage`` invocation on one shell line."""
    if line.startswith("$ "):
        line = line[2:]
    command: list[str] = []
    for word in [*_words(line), ";"]:
        if not OPERATOR.fullmatch(word):
            command.append(word)
            continue
        while command and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]):
            command.pop(0)  # VAR=value before the program
        if command and (command[0] == "arbitrage" or command[0].endswith("/arbitrage")):
            yield tuple(command[1:])
        elif command[:3] in (["python", "-m", "arbitrage.cli.main"], ["python3", "-m", "arbitrage.cli.main"]):
            yield tuple(command[3:])
        command = []


def _logical_lines(lines: list[str]) -> Iterator[tuple[int, str]]:
    """Shell lines with backslash continuations joined, each with the index of its first line."""
    start, parts = 0, []
    for i, line in enumerate(lines):
        if not parts:
            start = i
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        yield start, " ".join(parts)
        parts = []
    if parts:
        yield start, " ".join(parts)


def commands_in(text: str, source: str) -> list[ShownCommand]:
    """Every CLI invocation shown in one Markdown text (``source`` names it in messages)."""
    found: list[ShownCommand] = []
    lines = text.splitlines()
    prose: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            prose.append((i, lines[i]))
            i += 1
            continue
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence.group(1))), len(lines)
        )
        if fence.group(2).lower() in SHELL_LANGUAGES:
            block = lines[i + 1 : end]
            for offset, line in _logical_lines(block):
                if SKIP_MARKER in line:
                    continue
                for args in _invocations(line.strip()):
                    found.append(ShownCommand(f"{source}:{i + 2 + offset}", args))
        i = end + 1
    # inline code in the prose (it may wrap onto the next line)
    text_of_prose = "\n".join(line for _, line in prose)
    line_of = [n for n, line in prose for _ in range(len(line) + 1)]
    for match in INLINE_CODE.finditer(text_of_prose):
        code = " ".join(match.group(1).split())
        if code.startswith(("arbitrage ", ".venv/bin/arbitrage ")) and SKIP_MARKER not in code:
            for args in _invocations(code):
                found.append(ShownCommand(f"{source}:{line_of[match.start()] + 1}", args))
    return found


def _options(command: Any) -> dict[str, Any]:
    """The option names of a (click-like) command object, each with its option."""
    names: dict[str, Any] = {}
    for param in command.params:
        if param.param_type_name == "option":
            for name in (*param.opts, *param.secondary_opts):
                names[name] = param
    return names


def problems_of(shown: ShownCommand) -> tuple[list[str], list[str]]:
    """(the subcommand path it names, what is wrong with it: unknown commands and flags)."""
    # typer's command objects (typer may vendor click, so no isinstance on click's classes)
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    problems: list[str] = []
    args = list(shown.args)
    i = 0

    def check_flag(word: str) -> bool:
        """Check an option word; True when the option takes the next word as its value."""
        name = word.split("=", 1)[0]
        if name == "--help":
            return False
        option = _options(command).get(name)
        if option is None:
            where = " ".join(["arbitrage", *path])
            problems.append(f"`{where}` has no option {name}")
            return False
        return not option.is_flag and not option.count and "=" not in word

    # 1. walk down the groups: options of a group, then a subcommand name
    while hasattr(command, "commands") and i < len(args):
        word = args[i]
        i += 1
        if word.startswith("-"):
            if check_flag(word):
                i += 1
            continue
        sub = command.commands.get(word)
        if sub is None:
            problems.append(f"`{' '.join(['arbitrage', *path])}` has no command {word!r}")
            return path, problems
        path.append(word)
        command = sub
    # 2. the (sub)command's own words: every option must be one of its options
    for word in args[i:]:
        if word == "--":
            break
        if word.startswith("--") or re.fullmatch(r"-[A-Za-z]", word):
            check_flag(word)
    return path, problems


SHOWN = [
    c
    for path in DOC_FILES
    for c in commands_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
]


def test_the_docs_show_commands() -> None:
    sources = {c.where.split(":")[0] for c in SHOWN}
    assert "README.md" in sources
    assert len(SHOWN) >= 30, SHOWN  # the extraction still finds the commands the docs show


@pytest.mark.parametrize("shown", SHOWN, ids=lambda c: c.where)
def test_shown_command_exists(shown: ShownCommand) -> None:
    path, problems = problems_of(shown)
    assert not problems, f"{shown.where}: arbitrage {shlex.join(shown.args)}\n" + "\n".join(problems)
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output


# the checker itself, on hand-made docs: it must catch what it is there to catch


def _problems(markdown: str) -> list[str]:
    return [p for c in commands_in(markdown, "test.md") for p in problems_of(c)[1]]


def test_a_flag_that_does_not_exist_fails() -> None:
    assert _problems("```bash\n.venv/bin/arbitrage solve 'What is 1+1?' --no-such-flag 3\n```\n") == [
        "`arbitrage solve` has no option --no-such-flag"
    ]


def test_a_command_that_does_not_exist_fails() -> None:
    assert _problems("```\narbitrage models remove x\n```\n") == [
        "`arbitrage models` has no command 'remove'"
    ]


def test_continuations_pipes_inline_code_and_the_skip_marker() -> None:
    markdown = (
        "Run `arbitrage eval --dataset gsm8k\n--bogus 1` first.\n\n"
        "```bash\n"
        "ARBITRAGE_HOME=/tmp .venv/bin/arbitrage sweep --limit 2 \\\n"
        "    --points 'draft; target' --nope && arbitrage report OUT --missing | tee x\n"
        "arbitrage solve Q --wrong  # docs-test: skip\n"
        "arbitrage eval-prm --prm judge+arith:m#basic --data a.jsonl  # a comment --not-a-flag\n"
        "```\n"
    )
    shown = commands_in(markdown, "test.md")
    assert [c.args[0] for c in shown] == ["sweep", "report", "eval-prm", "eval"]
    assert shown[0].where == "test.md:5" and shown[-1].where == "test.md:1"
    assert _problems(markdown) == [
        "`arbitrage sweep` has no option --nope",
        "`arbitrage report` has no option --missing",
        "`arbitrage eval` has no option --bogus",
    ]


def test_option_values_and_shell_words_are_not_flags() -> None:
    assert (
        _problems('```bash\narbitrage -v solve "Q" --separator "\\n" --seed -5 --p=0.3 --diagnose\n```\n')
        == []
    )
