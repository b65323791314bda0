"""The package's import graph stays layered: no cycles, no upward imports, no private imports across packages.

Floors, bottom up (docs/architecture.md): the shared types and helpers, then sampling, model, data,
evaluation (pure metrics), engine, experiments, commands (the CLI sub-commands) and the entry point.
A module may import from its own floor or below. Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "softsampling"

FLOORS: dict[str, int] = {
    "softsampling.errors": 0,
    "softsampling.io": 0,
    "softsampling.parsing": 0,
    "softsampling.structures": 0,
    "softsampling.sampling": 1,
    "softsampling.model": 2,
    "softsampling.data": 3,
    "softsampling.evaluation": 4,
    "softsampling.engine": 5,
    "softsampling.experiments": 6,
    "softsampling.commands": 7,
    "softsampling.cli": 8,
    "softsampling.__main__": 8,
}


@dataclass(frozen=True)
class Import:
    target: str  # the imported module
    names: tuple[str, ...]  # names taken from it (empty for `import x` or when the names are modules)
    line: int


@dataclass(frozen=True)
class Module:
    path: Path
    is_package: bool  # an __init__.py
    imports: tuple[Import, ...]


def module_name(path: Path, root: Path) -> str:
    """Dotted name of ``path`` inside the package folder ``root`` (``root.name`` is the top package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> tuple[Import, ...]:
    """Every import of the package ``root`` in one file (top level and inside functions)."""
    top = root.name
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != top and not target.startswith(top + "."):
                continue
            names = [alias.name for alias in node.names]
            # `from softsampling.data import digits` imports the module softsampling.data.digits
            submodules = [f"{target}.{n}" for n in names if _is_module(f"{target}.{n}", root)]
            if submodules:
                found.extend(Import(s, (), node.lineno) for s in submodules)
            else:
                found.append(Import(target, tuple(names), node.lineno))
        elif isinstance(node, ast.Import):
            found.extend(
                Import(alias.name, (), node.lineno)
                for alias in node.names
                if alias.name == top or alias.name.startswith(top + ".")
            )
    return tuple(found)


def _is_module(dotted: str, root: Path) -> bool:
    path = root.parent / Path(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph(root: Path) -> dict[str, Module]:
    """Module name -> its file and imports, for every ``.py`` under the package folder ``root``."""
    return {
        module_name(p, root): Module(p, p.name == "__init__.py", imports_of(p, root))
        for p in sorted(root.rglob("*.py"))
    }


def floor_of(module: str, floors: dict[str, int]) -> int:
    if "." not in module:
        return 0  # the top package's __init__ (softsampling's holds only __version__)
    best = max(
        (prefix for prefix in floors if module == prefix or module.startswith(prefix + ".")), key=len, default=None
    )
    if best is None:
        raise AssertionError(f"{module} has no floor in tests/test_layering.py FLOORS: add its package there")
    return floors[best]


def upward_imports(graph: dict[str, Module], floors: dict[str, int]) -> list[str]:
    """One line per import of a module on a higher floor than the importer."""
    problems = []
    for name, module in graph.items():
        mine = floor_of(name, floors)
        for imp in module.imports:
            theirs = floor_of(imp.target, floors)
            if theirs > mine:
                problems.append(
                    f"{module.path}:{imp.line}: {name} (floor {mine}) imports {imp.target} "
                    f"(floor {theirs}); move the shared piece down (docs/architecture.md)"
                )
    return problems


def _package_of(name: str, graph: dict[str, Module]) -> str:
    module = graph.get(name)
    return name if module is None or module.is_package else name.rpartition(".")[0]


def private_imports(graph: dict[str, Module]) -> list[str]:
    """One line per ``_name`` imported from a module of another package."""
    problems = []
    for name, module in graph.items():
        mine = _package_of(name, graph)
        for imp in module.imports:
            for imported in imp.names:
                if (
                    imported.startswith("_")
                    and not imported.startswith("__")
                    and _package_of(imp.target, graph) != mine
                ):
                    problems.append(
                        f"{module.path}:{imp.line}: {name} imports private {imp.target}.{imported} "
                        "from another package; make it public where it belongs"
                    )
    return problems


def import_cycles(graph: dict[str, Module]) -> list[str]:
    """Each import cycle found, as ``a -> b -> a`` (a depth-first walk; every module reaches each cycle once)."""
    edges = {
        m: sorted({i.target for i in module.imports if i.target in graph and i.target != m})
        for m, module in graph.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                cycles.append(" -> ".join(path[path.index(t) :] + [t]))
            elif t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return cycles


GRAPH = import_graph(PACKAGE)


def test_every_module_has_a_floor() -> None:
    for name in GRAPH:
        floor_of(name, FLOORS)


def test_imports_go_down_or_sideways() -> None:
    problems = upward_imports(GRAPH, FLOORS)
    assert not problems, "\n".join(problems)


def test_no_private_imports_across_packages() -> None:
    problems = private_imports(GRAPH)
    assert not problems, "\n".join(problems)


def test_no_import_cycles() -> None:
    cycles = import_cycles(GRAPH)
    assert not cycles, "import cycle(s):\n" + "\n".join(cycles)


def test_command_modules_are_all_in_the_commands_package() -> None:
    from softsampling.cli import COMMANDS

    modules = {name.replace("-", "_") for name in COMMANDS}  # `audit-merge` lives in commands/audit_merge.py
    assert {module for module, _ in COMMANDS.values()} == {f"softsampling.commands.{m}" for m in modules}
    assert {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__"} == modules


# ------------------------------------------------------------------ the checker itself, on a tiny fake package
def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "softsampling"
    for relative, text in {"__init__.py": "", **files}.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


CLEAN = {
    "errors.py": "",
    "sampling/__init__.py": "from softsampling.errors import *\n",
    "data/__init__.py": "",
    "data/reader.py": "from softsampling.sampling import rules\ndef _helper(): ...\n",
    "data/writer.py": "from .reader import _helper\n",  # private, but inside its own package
    "engine/__init__.py": "",
    "engine/train.py": "def train():\n    from softsampling.data import reader\n",
}


def test_the_checker_passes_a_layered_package(tmp_path: Path) -> None:
    graph = import_graph(write_package(tmp_path, CLEAN))
    assert graph["softsampling.data.writer"].imports == (Import("softsampling.data.reader", ("_helper",), 1),)
    assert graph["softsampling.engine.train"].imports == (Import("softsampling.data.reader", (), 2),)
    assert upward_imports(graph, FLOORS) == [] and private_imports(graph) == [] and import_cycles(graph) == []


def test_the_checker_catches_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    files = {**CLEAN, "sampling/rules.py": "def f():\n    import softsampling.engine.train\n"}
    problems = upward_imports(import_graph(write_package(tmp_path, files)), FLOORS)
    assert len(problems) == 1
    assert (
        "rules.py:2: softsampling.sampling.rules (floor 1) imports softsampling.engine.train (floor 5)" in problems[0]
    )


def test_the_checker_catches_a_cycle(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "engine/predict.py": "from softsampling.engine.train import train\n",
        "engine/train.py": "def train():\n    from softsampling.engine import predict\n",
    }
    graph = import_graph(write_package(tmp_path, files))
    assert upward_imports(graph, FLOORS) == []  # sideways imports are allowed ...
    assert import_cycles(graph) == [
        "softsampling.engine.predict -> softsampling.engine.train -> softsampling.engine.predict"
    ]  # ... circles are not


def test_the_checker_catches_a_private_import_from_another_package(tmp_path: Path) -> None:
    files = {**CLEAN, "engine/train.py": "from softsampling.data.reader import _helper\n"}
    problems = private_imports(import_graph(write_package(tmp_path, files)))
    assert len(problems) == 1
    assert "softsampling.engine.train imports private softsampling.data.reader._helper" in problems[0]


def test_a_module_outside_every_floor_is_named(tmp_path: Path) -> None:
    graph = import_graph(write_package(tmp_path, {**CLEAN, "plugins/extra.py": ""}))
    with pytest.raises(AssertionError, match="softsampling.plugins.extra has no floor"):
        upward_imports(graph, FLOORS)
