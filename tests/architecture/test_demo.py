"""The demo sits on top: no stage imports it, and nothing in ``mindmirror`` imports in a circle.

Read from the source with ``ast`` (nothing is imported). Module names come from
``pyproject.toml``'s ``package-dir``, so ``training/teacher/cli.py`` is
``mindmirror.training.teacher.cli`` as installed.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the product's stages: the demo drives them, never the other way round
STAGES = ("student", "training", "export", "service", "engine")
DEMO = "mindmirror.demo"


def source_modules() -> dict[str, Path]:
    """Every module of the ``mindmirror`` namespace, by its installed name."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    modules = {}
    for package, folder in config["tool"]["setuptools"]["package-dir"].items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            # A folder mapped on its own (mindmirror.student = student/) wins over the same
            # name found under the mindmirror/ folder, which holds no such files anyway.
            modules.setdefault(name, path)
    return modules


MODULES = source_modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.Module, module_level: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements; with ``module_level``, only those that run when the module is
    imported (not in functions, not under ``if TYPE_CHECKING:``)."""
    if not module_level:
        yield from (n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom))
        return
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    pending.append(child)
            for handler in getattr(node, "handlers", []):
                pending.extend(handler.body)


def imported_modules(name: str, module_level: bool) -> set[str]:
    """The modules of the namespace that ``name`` imports. ``from package import thing`` counts
    as the submodule ``package.thing`` when there is one, else as ``package`` itself."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_nodes(tree, module_level):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = name.split(".")
            if not is_package:
                anchor = anchor[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


def import_cycles(names: set[str], module_level: bool) -> list[list[str]]:
    """The import cycles among ``names`` (one per strongly connected component, Tarjan)."""
    graph = {name: imported_modules(name, module_level) & names for name in names}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(names):
        if name not in index:
            visit(name)
    return cycles


def test_the_module_map_finds_the_packages() -> None:
    # A guard on the scan itself: a wrong map would make the tests below pass vacuously.
    for name in (DEMO, f"{DEMO}.cli", f"{DEMO}.ablation", "mindmirror.training.teacher.teach"):
        assert name in MODULES, name
    assert imported_modules(f"{DEMO}.ablation", module_level=True) >= {
        f"{DEMO}.settings",
        f"{DEMO}.stages",
    }
    # Lazy imports are seen when asked for, and only then.
    lazy = imported_modules(f"{DEMO}.stages", module_level=False)
    assert "mindmirror.training.teacher.teach" in lazy
    assert "mindmirror.training.teacher.teach" not in imported_modules(
        f"{DEMO}.stages", module_level=True
    )


def test_no_stage_imports_the_demo() -> None:
    offenders = sorted(
        f"{name} imports {target}"
        for name in MODULES
        if name.partition(".")[2].split(".")[0] in STAGES
        for target in imported_modules(name, module_level=False)
        if target == DEMO or target.startswith(DEMO + ".")
    )
    assert offenders == []


def test_the_demo_and_the_ablation_import_nothing_in_a_circle() -> None:
    # Lazy (function-level) imports count here: a cycle closed inside a function is the kind
    # that works by accident until someone moves an import to the top.
    demo = {name for name in MODULES if name == DEMO or name.startswith(DEMO + ".")}
    assert import_cycles(demo, module_level=False) == []


def test_nothing_in_mindmirror_imports_in_a_circle() -> None:
    # Module-level imports only: a function may import a module that imports its own, once
    # both are loaded (the CLI's lazy handlers do), and that is no cycle at import time.
    assert import_cycles(set(MODULES), module_level=True) == []
