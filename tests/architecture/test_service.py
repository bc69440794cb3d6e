"""The service's layers, read from the source with ``ast``: HTTP on top, the inference layer
below it knowing no HTTP, the model and its backends below that.

* Route modules reach the model only through the inference layer (and the state that holds
  it): they import neither the backends, the model runtime, the tokenizer nor the batchers.
* The inference layer, and everything it imports, imports no web framework and none of the
  HTTP layer's errors or bodies.
* The model and inference modules raise no HTTP error: what they refuse is a
  ``mindmirror.service.rejections`` error, and only the error handlers turn it into a status.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"

#: The HTTP modules a request passes through before the inference layer.
ROUTE_MODULES = ("routes", "auth", "error_handlers", "middleware")
#: What route modules must not import: the model beneath the inference layer.
MODEL_INTERNALS = (
    "mindmirror.service.backends",
    "mindmirror.service.runtime",
    "mindmirror.service.text",
    "mindmirror.service.batching",
)
#: The model and inference modules (no HTTP errors raised here).
MODEL_MODULES = ("inference", "rejections", "runtime", "selfconsistency", "text")
WEB = ("fastapi", "starlette")
HTTP_ONLY = ("mindmirror.service.errors", "mindmirror.service.schemas")

#: How the distribution maps import names to folders (pyproject's package-dir).
PACKAGE_DIRS = {
    "mindmirror.student": ROOT / "student",
    "mindmirror.training": ROOT / "training",
    "mindmirror.export": ROOT / "export",
    "mindmirror.service": ROOT / "service",
    "mindmirror": ROOT / "mindmirror",
}


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (function-level imports too), with
    ``from package import module`` counted as both names."""
    found: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the project imports absolutely)"
            assert node.module is not None
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def source_of(module: str) -> Path | None:
    """The file of a ``mindmirror.*`` module in this checkout, None for anything else."""
    for package, folder in PACKAGE_DIRS.items():
        if module == package or module.startswith(package + "."):
            relative = module.removeprefix(package).lstrip(".").replace(".", "/")
            base = folder / relative if relative else folder
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return candidate
            return None
    return None


def closure(start: Path) -> dict[Path, set[str]]:
    """Every project file ``start`` imports, directly or not, with what each imports."""
    seen: dict[Path, set[str]] = {}
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = imports(path)
        todo.extend(p for m in seen[path] if (p := source_of(m)) is not None)
    return seen


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_route_modules_reach_the_model_only_through_the_inference_layer() -> None:
    for name in ROUTE_MODULES:
        path = SERVICE / f"{name}.py"
        assert path.is_file(), f"{path} is gone: update ROUTE_MODULES"
        wrong = sorted(m for m in imports(path) if within(m, MODEL_INTERNALS))
        assert not wrong, f"service/{name}.py imports {wrong}; go through the inference layer"
    assert "mindmirror.service.inference" in imports(SERVICE / "routes.py")


def test_the_inference_layer_knows_no_http() -> None:
    reached = closure(SERVICE / "inference.py")
    assert SERVICE / "runtime.py" in reached  # the closure does follow project imports
    for path, names in reached.items():
        wrong = sorted(m for m in names if within(m, WEB + HTTP_ONLY))
        assert not wrong, f"{path.relative_to(ROOT)} (imported by the inference layer): {wrong}"


def service_error_names() -> set[str]:
    """ServiceError and every class in errors.py derived from it."""
    names = {"ServiceError"}
    classes = [n for n in parse(SERVICE / "errors.py").body if isinstance(n, ast.ClassDef)]
    grew = True
    while grew:
        grew = False
        for node in classes:
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            if node.name not in names and bases & names:
                names.add(node.name)
                grew = True
    return names


def raised_names(path: Path) -> set[str]:
    raised: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name):
                raised.add(target.id)
            elif isinstance(target, ast.Attribute):
                raised.add(target.attr)
    return raised


def test_model_and_inference_modules_raise_no_http_errors() -> None:
    http_errors = service_error_names()
    assert {"InvalidInput", "SelfEvaluationUnavailable", "QueueFull"} <= http_errors
    paths = [SERVICE / f"{name}.py" for name in MODEL_MODULES]
    paths += sorted((SERVICE / "backends").glob("*.py"))
    for path in paths:
        assert path.is_file(), f"{path} is gone: update MODEL_MODULES"
        assert "mindmirror.service.errors" not in imports(path), path
        wrong = sorted(raised_names(path) & http_errors)
        assert not wrong, f"{path.relative_to(ROOT)} raises HTTP errors {wrong}"


def test_refusals_become_statuses_in_one_place() -> None:
    http_modules = [
        path for path in sorted(SERVICE.glob("*.py")) if any(within(m, WEB) for m in imports(path))
    ]
    mapping = [
        path.name for path in http_modules if "mindmirror.service.rejections" in imports(path)
    ]
    assert mapping == ["error_handlers.py"]
