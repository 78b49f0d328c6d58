"""The house's stairs: every import in src/arbitrage runs down a floor (or stays on its own), never up,
and no two packages or modules import each other in a circle.

Read from the source with ``ast``, so an import inside a function or under ``TYPE_CHECKING`` counts as
much as one at the top of a file: a lazy import still says which floor a module stands on.

Floors, bottom to top (a unit is a top-level module or sub-package of ``arbitrage``; the package's own
``__init__`` is the public API, above everything it re-exports):

0. shared vocabulary: errors, settings, prompts, answer, grading, costs, seeds, models, data
1. backends: the generators
2. trace: what a solve records (its types come from backends)
3. prm, router: the step scorers and the routers
4. policies: the routing decisions (they use scorers and routers)
5. engine, concurrent: the step loop and running it over many problems
6. run, evaluation, labelling: what runs solves (to answer, to measure, to make labels)
7. the public API (``arbitrage/__init__.py``)
8. server
9. cli
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "arbitrage"
SRC = Path(__file__).resolve().parents[2] / "src" / PACKAGE
API = "__init__"  # the unit of arbitrage/__init__.py

FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors", "settings", "prompts", "answer", "grading", "costs", "seeds", "models", "data"),
    ("backends",),
    ("trace",),
    ("prm", "router"),
    ("policies",),
    ("engine", "concurrent"),
    ("run", "evaluation", "labelling"),
    (API,),
    ("server",),
    ("cli",),
)
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


@dataclass(frozen=True, slots=True)
class Import:
    """One import of an arbitrage module by another."""

    importer: str  # dotted module name, e.g. "arbitrage.labelling.rollout"
    imported: str  # dotted module name it reaches (a module that exists under src)
    path: str  # the importer's file, relative to src/
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path) -> dict[str, Path]:
    """Every module under ``root`` (a package folder) by dotted name."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imports_of(
    name: str, source: str, modules: Iterable[str], path: str = "", is_package: bool = False
) -> list[Import]:
    """The arbitrage modules ``source`` (module ``name``) imports, anywhere in the file.

    ``from a.b import c`` reaches ``a.b.c`` when that is a module, else ``a.b``; relative imports are
    resolved against the importer's package.
    """
    known = set(modules)
    package = name if is_package else name.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str, line: int) -> None:
        while target and target not in known:  # `import arbitrage.x.y` of a name inside a module
            target = target.rpartition(".")[0]
        reached = Import(name, target, path, line)
        inside = target == PACKAGE or target.startswith(PACKAGE + ".")
        if inside and target != name and reached not in found:  # `from a import b, c`: one import of a
            found.append(reached)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                add(submodule if submodule in known else origin, node.lineno)
    return found


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else API


def upward(imports: Iterable[Import], floor: Mapping[str, int]) -> list[str]:
    """The imports that reach a higher floor than their importer's, as readable lines."""
    lines = []
    for i in imports:
        here, there = unit_of(i.importer), unit_of(i.imported)
        if here != there and floor[there] > floor[here]:
            lines.append(f"{i.path}:{i.line}: {i.importer} ({here}, floor {floor[here]}) imports "
                         f"{i.imported} ({there}, floor {floor[there]})")  # fmt: skip
    return lines


def circles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def graph(imports: Iterable[Import], key: str = "module") -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for i in imports:
        a, b = (i.importer, i.imported) if key == "module" else (unit_of(i.importer), unit_of(i.imported))
        if a != b:
            edges[a].add(b)
    return edges


def src_imports() -> list[Import]:
    modules = find_modules(SRC)
    found = []
    for name, path in modules.items():
        rel = str(path.relative_to(SRC.parent))
        found += imports_of(name, path.read_text(), modules, rel, is_package=path.name == "__init__.py")
    return found


# ---------------------------------------------------------------------------------------------------
# the reader, on hand-built sources


MODULES = ("arbitrage", "arbitrage.engine", "arbitrage.cli", "arbitrage.cli.main", "arbitrage.prm",
           "arbitrage.prm.base", "arbitrage.prm.rollout", "arbitrage.policies", "arbitrage.errors")  # fmt: skip


def test_the_reader_sees_lazy_type_checking_and_relative_imports() -> None:
    source = '''
"""from arbitrage.cli import main: a docstring is not an import"""
from typing import TYPE_CHECKING
import json
from arbitrage.errors import ConfigError
from . import base
from .base import StepScores
if TYPE_CHECKING:
    from arbitrage.policies import RoutingPolicy

def later():
    from arbitrage.engine import Engine
    import arbitrage.cli.main as cli_main
    from arbitrage.cli import main
'''
    found = imports_of("arbitrage.prm.rollout", source, MODULES)
    assert [(i.imported, i.line) for i in found] == [
        ("arbitrage.errors", 5),
        ("arbitrage.prm.base", 6),
        ("arbitrage.prm.base", 7),
        ("arbitrage.policies", 9),
        ("arbitrage.engine", 12),
        ("arbitrage.cli.main", 13),
        ("arbitrage.cli.main", 14),
    ]
    assert [line.split(":")[1] for line in upward(found, FLOOR)] == ["9", "12", "13", "14"]


def test_a_package_init_resolves_relative_imports_inside_itself() -> None:
    found = imports_of("arbitrage.prm", "from .base import StepScorer\n", MODULES, is_package=True)
    assert [i.imported for i in found] == ["arbitrage.prm.base"]


def test_circles_are_found_at_both_grains() -> None:
    imports = [
        Import("arbitrage.evaluation.report", "arbitrage.evaluation.report_markdown", "", 1),
        Import("arbitrage.evaluation.report_markdown", "arbitrage.evaluation.report", "", 2),
        Import("arbitrage.prm.rollout", "arbitrage.engine", "", 3),
        Import("arbitrage.engine", "arbitrage.prm.base", "", 4),
    ]
    assert circles(graph(imports)) == [
        ["arbitrage.evaluation.report", "arbitrage.evaluation.report_markdown"]
    ]
    assert circles(graph(imports, key="unit")) == [["engine", "prm"]]


# ---------------------------------------------------------------------------------------------------
# the house itself


def test_every_unit_stands_on_a_floor() -> None:
    units = {unit_of(name) for name in find_modules(SRC)}
    assert units - set(FLOOR) == set(), "put each new module or package on a floor in FLOORS"
    assert len(FLOOR) == sum(len(units) for units in FLOORS), "a unit stands on two floors"


def test_no_import_runs_upward() -> None:
    lines = upward(src_imports(), FLOOR)
    assert not lines, "imports that run upward:\n" + "\n".join(lines)


def test_no_circle_between_packages() -> None:
    found = circles(graph(src_imports(), key="unit"))
    assert not found, f"packages that import each other in a circle: {found}"


def test_no_circle_between_modules() -> None:
    found = circles(graph(src_imports()))
    assert not found, f"modules that import each other in a circle: {found}"
