"""An arithmetic verifier: check, exactly, the equations a step states.

Small models' most common slip in grade-school math is a wrong result of a calculation they wrote out
("48 / 2 = 26"). This scorer finds the arithmetic a step states and checks it with exact rational
arithmetic (fractions over Python's syntax tree), in microseconds and with no model. It is blind to
everything else: a step that uses the wrong quantity but computes it correctly passes, and so does
wrong reasoning in words.

What counts as a stated equation (after normalising LaTeX ``\\times``/``\\cdot``/``\\div``/
``\\frac{a}{b}``, ``×``/``÷``, ``x`` between numbers, thousands separators, ``$``, unit words between a
number and an operator such as "5 apples + 3 apples = 8"):

- a run of numbers, operators (``+ - * / ^``), parentheses and ``=`` signs, with at least one side of
  some ``=`` being a calculation (two bare numbers, "3 = 15", are left alone: usually prose fragments);
- chains ``a = b = c`` compare neighbours; the sloppy chain "2 + 3 = 5 * 2 = 10" (meaning "then
  times 2") is read as intended; a bare number opening a chain that does not match it is dropped as
  a prose fragment ("the tip of $3 = ..." is not a claim that 3 equals something);
- percentages: ``20% of 50`` is 0.2 · 50; a side that is a bare ``N%`` may mean N or N/100;
- rounding: a stated decimal with d decimals may differ by half a unit in the d-th place; a stated
  integer for a non-integer value may differ by less than 1 (whole buses, floors); ``≈`` allows 2%.

Reward: 1.0 when every stated equation holds, 0.0 when any fails, and ``neutral`` (0.5 by default) for
a step with no checkable equation: the verifier does not know, and says so in ``info``.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from arbitrage.errors import ConfigError
from arbitrage.prm.base import StepScores, check_request

# 1. normalisation of the text, in order
_LATEX = [
    (re.compile(r"\\d?frac\s*\{([^{}]+)\}\s*\{([^{}]+)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\(?:times|cdot|ast)|[×·∗]"), "*"),
    (re.compile(r"\\div|÷"), "/"),
    (re.compile(r"\\approx|≈"), " ≈ "),
    (re.compile(r"\\left|\\right|\\[()\[\]]|\\,|\\!|\\;"), " "),
    (re.compile(r"\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}"), " "),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\\$|\$"), ""),
    (re.compile(r"[−–]"), "-"),
    (re.compile(r"\*\*"), "^"),
]
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_LEADING_DOT = re.compile(r"(?<![\d.])\.(\d)")
_TIMES_X = re.compile(r"(?<=[\d)])\s*[xX]\s*(?=[\d(])")
_UNITS = re.compile(
    r"(?<=\d)\s+(?:[A-Za-z][A-Za-z'.]*\s+){0,2}[A-Za-z][A-Za-z'.]*\s*(?=[-+*/=≈)^]|[xX]\s+[\d(])"
)
_PERCENT_OF = re.compile(r"(\d+(?:\.\d+)?)\s*%\s+of\s+(?=[\d(])")
_IMPLICIT = re.compile(r"(?<=[\d)])\s*(?=\()")

# 2. runs of arithmetic: sides separated by "=" or "≈"
_SIDE = r"[\d.\s+\-*/^()%]*\d[\d.\s+\-*/^()%]*"
_RUN = re.compile(rf"(?<![A-Za-z])(?:{_SIDE})(?:(?:=|≈){_SIDE})+")  # not inside a word ("1e5")
_BARE = re.compile(r"^\(*\s*-?\d+(?:\.\d+)?\s*\)*%?$")
_OPERATOR = re.compile(r"(?<=[\d)%])\s*[-+*/^]\s*(?=[\d(.-])")


@dataclass(frozen=True, slots=True)
class EquationCheck:
    """One stated equality and whether it holds."""

    text: str  # the two sides as found, normalised, e.g. "48/2 = 24"
    holds: bool
    left: float  # exact value of the left side, as a float
    right: float  # exact value of the right side, as a float


def normalise(text: str) -> str:
    """The step's text with its arithmetic in a form the parser reads (see the module docstring)."""
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)
    text = _THOUSANDS.sub("", text)
    text = _LEADING_DOT.sub(r"0.\1", text)
    text = _PERCENT_OF.sub(r"(\1/100) * ", text)
    text = _UNITS.sub(" ", text)
    text = _TIMES_X.sub(" * ", text)
    return _IMPLICIT.sub(" * ", text)


_MAX_EXPONENT = 64  # larger integer powers are not checked (they only arise from garbled text)
_MAX_MAGNITUDE = Fraction(10) ** 60  # values beyond this are not checked either
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")


class _Unsupported(Exception):
    """The expression is outside what the verifier evaluates exactly: the side cannot be checked."""


def _exact(node: ast.AST, source: str) -> Fraction:
    """Exact value of an arithmetic syntax tree of numbers, + - * / ** and unary signs."""
    if isinstance(node, ast.Expression):
        return _exact(node.body, source)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        literal = ast.get_source_segment(source, node) or repr(node.value)
        try:
            return Fraction(Decimal(literal))
        except (InvalidOperation, ValueError) as exc:
            raise _Unsupported(literal) from exc
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _exact(node.operand, source)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _exact(node.left, source), _exact(node.right, source)
        if isinstance(node.op, ast.Add):
            result = left + right
        elif isinstance(node.op, ast.Sub):
            result = left - right
        elif isinstance(node.op, ast.Mult):
            result = left * right
        elif isinstance(node.op, ast.Div):
            if right == 0:
                raise _Unsupported("division by zero")
            result = left / right
        elif isinstance(node.op, ast.Pow):
            result = _power(left, right)
        else:
            raise _Unsupported(type(node.op).__name__)
        if abs(result) > _MAX_MAGNITUDE:
            raise _Unsupported("too large")
        return result
    raise _Unsupported(type(node).__name__)


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator == 1:
        if abs(exponent) > _MAX_EXPONENT or (base == 0 and exponent < 0):
            raise _Unsupported("exponent")
        return base ** int(exponent)
    if base < 0:  # a fractional power of a negative number is not real
        raise _Unsupported("complex")
    # roots and such are compared as floats
    return Fraction(float(base) ** float(exponent))


def _value(side: str) -> list[Fraction] | None:
    """Exact value(s) of one side: two for a bare percentage (N or N/100), None if it cannot be checked.

    Evaluated over exact fractions from Python's syntax tree of the side (numbers, ``+ - * / ^``,
    parentheses): anything else, a division by zero, a huge power or value, is "cannot check" (None),
    never an exception.
    """
    side = side.strip()
    percent_literal = bool(_BARE.match(side)) and side.endswith("%")
    expr = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", side).replace("^", "**")
    if expr.count("(") != expr.count(")"):
        expr = expr.strip("()") if expr.strip("()").count("(") == expr.strip("()").count(")") else expr
    expr = _LEADING_ZEROS.sub("", expr)
    try:
        exact = _exact(ast.parse(expr.strip(), mode="eval"), expr.strip())
    except (_Unsupported, SyntaxError, ValueError, OverflowError, ZeroDivisionError, RecursionError):
        return None
    if percent_literal:
        return [exact * 100, exact]
    return [exact]


def _decimals(side: str) -> int | None:
    """Decimal places of a bare stated number, or None if the side is a calculation."""
    side = side.strip().strip("()").strip()
    if not _BARE.match(side) or side.endswith("%"):
        return None
    return len(side.split(".")[1]) if "." in side else 0


def _close(a: Fraction, b: Fraction, stated_a: str, stated_b: str, approx: bool) -> bool:
    if a == b:
        return True
    diff = abs(a - b)
    if approx:
        return diff <= Fraction(2, 100) * max(abs(a), abs(b))
    for stated, other in ((stated_b, a), (stated_a, b)):
        places = _decimals(stated)
        if places is None:
            continue
        if places == 0 and other.denominator != 1:
            if diff < 1:
                return True
        elif places > 0 and diff <= Fraction(1, 2 * 10**places) + Fraction(1, 10**12):
            return True
    return False


def _is_calculation(side: str) -> bool:
    return bool(_OPERATOR.search(side.strip()))


def find_equations(text: str) -> list[EquationCheck]:
    """Every checkable equality the text states, with its verdict (see the module docstring)."""
    checks: list[EquationCheck] = []
    for match in _RUN.finditer(normalise(text)):
        run = match.group(0)
        parts = re.split(r"(=|≈)", run)
        sides = [re.sub(r"^[\s.]+|[\s.]+$", "", s) for s in parts[0::2]]  # sentence dots, spaces
        ops = parts[1::2]
        values = [_value(s) for s in sides]
        # a bare number opening a chain that does not match the next side is a prose fragment
        v0, v1 = values[0], values[1]
        if (
            len(sides) >= 3
            and not _is_calculation(sides[0])
            and v0
            and v1
            and not any(_close(a, b, sides[0], sides[1], False) for a in v0 for b in v1)
        ):
            sides, ops, values = sides[1:], ops[1:], values[1:]
        for i in range(len(sides) - 1):
            left, right = sides[i], sides[i + 1]
            if not (_is_calculation(left) or _is_calculation(right)):
                continue
            lv, rv = values[i], values[i + 1]
            if lv is None or rv is None:
                continue
            approx = ops[i] == "≈"
            holds = any(_close(a, b, left, right, approx) for a in lv for b in rv)
            if not holds and _is_calculation(right):
                # sloppy chain "2 + 3 = 5 * 2 = 10": the right side continues from the left's value
                head = re.match(r"^\(*\s*(-?\d+(?:\.\d+)?)", right)
                head_value = _value(head.group(1)) if head else None
                if head_value and any(_close(a, head_value[0], left, head.group(1), approx) for a in lv):  # type: ignore[union-attr]
                    holds = True
            checks.append(EquationCheck(f"{left} {ops[i]} {right}", holds, float(lv[0]), float(rv[0])))
    return checks


class ArithmeticVerifier:
    """Scores a step 1 if every equation it states holds, 0 if any fails, ``neutral`` if it states none."""

    def __init__(self, neutral: float = 0.5) -> None:
        if not 0.0 <= neutral <= 1.0:
            raise ConfigError(f"The arithmetic verifier's neutral reward must be in [0, 1], got {neutral}")
        self.neutral = neutral
        self.name = "arith" if neutral == 0.5 else f"arith(neutral={neutral:g})"

    def check(self, step: str) -> tuple[float, list[EquationCheck]]:
        """Reward of one step and the equations behind it."""
        checks = find_equations(step)
        if not checks:
            return self.neutral, checks
        return (1.0 if all(c.holds for c in checks) else 0.0), checks

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        check_request(question, steps)
        t0 = time.perf_counter()
        first = len(steps) - 1 if only_last else 0
        rewards: list[float] = []
        details: list[dict[str, object]] = []
        for step in steps[first:]:
            reward, checks = self.check(step)
            rewards.append(reward)
            details.append(
                {
                    "equations": len(checks),
                    "failed": [c.text for c in checks if not c.holds],
                    "verdict": "none" if not checks else "pass" if reward == 1.0 else "fail",
                }
            )
        return StepScores(
            rewards=tuple(rewards),
            first=first,
            seconds=time.perf_counter() - t0,
            scorer=self.name,
            info={"steps": details},
        )

    def close(self) -> None:
        pass
