"""Measure the shape of the package: folders, sizes, imports between folders.

``python scripts/check_architecture.py`` prints the figures (modules, largest file and
function, import circles, folders importing a folder above them, Qt outside the napari wing);
``--check`` exits 1 when a rule of docs/architecture.md is broken. tests/test_architecture.py
asserts the same rules. Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "napari_imilia"
SRC = Path(__file__).resolve().parents[1] / "src"
#: Folders from the bottom of the house to the top (docs/architecture.md): a module may import
#: only modules of its own folder or of a folder before it in this list.
LAYERS: tuple[str, ...] = (
    "base",
    "slide",
    "tiling",
    "features",
    "mil",
    "export",
    "predict",
    "interpret",
    "review",
    "cohort",
    "report",
    "demo",
    "_napari",
    "cli",
)
#: Top-level modules and packages of the base layer.
BASE = frozenset(
    {
        "__init__",
        "_lazy",
        "errors",
        "files",
        "device",
        "progress",
        "processes",
        "user_dirs",
        "trust",
    }
)
QT_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)
    external: set[str] = field(default_factory=set)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def load_modules() -> dict[str, Module]:
    """Every module of the package with what it imports (lazy and TYPE_CHECKING-free)."""
    modules = {_module_name(p): Module(_module_name(p), p) for p in (SRC / PACKAGE).rglob("*.py")}
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        is_package = module.path.name == "__init__.py"
        for node in _runtime_nodes(tree):
            for target in _targets(node, module.name, is_package, modules):
                if target.startswith(PACKAGE):
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                    if target and target != module.name:
                        module.imports.add(target)
                else:
                    module.external.add(target.split(".")[0])
    return modules


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Import nodes outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _runtime_nodes(node)


def _targets(node: ast.AST, name: str, is_package: bool, modules: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join([*parts, base] if base else parts)
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
    return subs if len(subs) == len(node.names) else [*subs, base]


def folder_of(module: str) -> str:
    """The layer a module belongs to (``base`` for the root's small modules)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE:
        return "base"
    return "cli" if parts[1] in ("cli", "_cli") else parts[1]


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in modules[node].imports:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for name in modules:
        if name not in index:
            visit(name)
    return found


def upward_imports(modules: dict[str, Module]) -> list[str]:
    """Imports of a module in a folder above the importer's (``a -> b``)."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return sorted(
        f"{m.name} -> {target}"
        for m in modules.values()
        for target in m.imports
        if rank[folder_of(target)] > rank[folder_of(m.name)]
    )


def qt_outside_napari(modules: dict[str, Module]) -> list[str]:
    return sorted(
        f"{m.name} imports {', '.join(sorted(m.external & set(QT_MODULES)))}"
        for m in modules.values()
        if folder_of(m.name) not in ("_napari", "cli") and m.external & set(QT_MODULES)
    )


def sizes(modules: dict[str, Module]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines, module) of every file and (lines, module:function) of every function."""
    files, functions = [], []
    for m in modules.values():
        text = m.path.read_text(encoding="utf-8")
        files.append((len(text.splitlines()), m.name))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1, f"{m.name}:{node.name}"))
    return sorted(files, reverse=True), sorted(functions, reverse=True)


def report(modules: dict[str, Module]) -> list[str]:
    """The figures, and the broken rules (lines starting with 'BROKEN')."""
    files, functions = sizes(modules)
    top = sorted(n for n in modules if n.count(".") == 1 and modules[n].path.name != "__init__.py")
    lines = [
        f"modules: {len(modules)}; top-level modules: {len(top)}",
        f"largest file: {files[0][1]} ({files[0][0]} lines)",
        f"largest function: {functions[0][1]} ({functions[0][0]} lines)",
    ]
    broken = {
        "import circles": cycles(modules),
        "imports of a folder above": upward_imports(modules),
        "Qt outside the napari wing": qt_outside_napari(modules),
        f"files over {MAX_FILE_LINES} lines": [f for f in files if f[0] > MAX_FILE_LINES],
        f"functions over {MAX_FUNCTION_LINES} lines": [
            f for f in functions if f[0] > MAX_FUNCTION_LINES
        ],
    }
    for what, items in broken.items():
        lines.append(f"{what}: {len(items)}")
        lines += [f"BROKEN {what}: {item}" for item in items]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a rule is broken")
    args = parser.parse_args(argv)
    lines = report(load_modules())
    print("\n".join(lines))
    return 1 if args.check and any(line.startswith("BROKEN") for line in lines) else 0


if __name__ == "__main__":
    raise SystemExit(main())
