"""The decoding engine is the one home of ONNX decoding and of the model's special ids.

Read with ``ast`` over the source tree (nothing is imported):

- ONNX Runtime sessions are created and run only in ``engine/``, so the loop the service runs
  is the loop the export's parity check certified;
- ``config.json`` is read, and token ids are looked up in it, only by ``engine/ids.py``;
- the engine imports nothing from the stages that use it, and nothing heavy at module level
  (the serving image has no torch or transformers; onnxruntime and CTranslate2 are optional).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: folders whose code must leave ONNX sessions and config.json to the engine
USERS = ("student", "training", "export", "service", "mindmirror", "bench")
ENGINE = REPO / "engine"
#: ONNX Runtime names that create a session or a device tensor
SESSION_NAMES = {"InferenceSession", "OrtValue"}
#: ONNX Runtime session methods that bind or run (``session.run`` is matched by its arguments)
SESSION_CALLS = {"io_binding", "run_with_iobinding"}
#: config.json keys that only the engine reads
ID_KEYS = {"pad_token_id", "eos_token_id", "decoder_start_token_id", "vocab_size"}


def sources(*folders: str) -> Iterator[tuple[str, ast.Module]]:
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            yield relative, ast.parse(path.read_text(encoding="utf-8"), filename=relative)


def names(node: ast.AST) -> set[str]:
    """Every identifier used in ``node`` (names and attribute names)."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            found.add(child.attr)
    return found


def is_session_run(call: ast.Call) -> bool:
    """``x.run(output_names, feeds, ...)``: ONNX Runtime's signature (output names ``None`` or a
    list); ``asyncio.run(coro)``, ``server.run()`` and friends take one argument or none. Also
    ``x.io_binding()`` and ``x.run_with_iobinding(binding)``."""
    if not isinstance(call.func, ast.Attribute):
        return False
    if call.func.attr in SESSION_CALLS:
        return True
    if call.func.attr != "run":
        return False
    if len(call.args) < 2:
        return False
    first = call.args[0]
    return (isinstance(first, ast.Constant) and first.value is None) or isinstance(
        first, ast.List | ast.Tuple
    )


def test_onnx_sessions_live_in_the_engine() -> None:
    offenders = []
    for relative, tree in sources(*USERS):
        used = names(tree) & SESSION_NAMES
        if used:
            offenders.append(f"{relative}: {sorted(used)}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and is_session_run(node):
                offenders.append(f"{relative}:{node.lineno}: session.run(...)")
    assert not offenders, "ONNX Runtime used outside engine/ (use mindmirror.engine.onnx):\n" + (
        "\n".join(offenders)
    )


def test_the_rule_sees_what_it_forbids() -> None:
    """The checks above are not vacuous: they flag the engine's own code."""
    flagged = [
        relative
        for relative, tree in sources("engine")
        if names(tree) & SESSION_NAMES
        or any(isinstance(n, ast.Call) and is_session_run(n) for n in ast.walk(tree))
    ]
    assert flagged == ["engine/onnx.py"]
    assert [relative for relative, tree in sources("engine") if config_readers(tree)] == [
        "engine/ids.py"
    ]


def config_readers(tree: ast.Module) -> list[str]:
    """What in ``tree`` reads ``config.json``: a token-id key looked up in a dict
    (``config["eos_token_id"]``, ``config.get("pad_token_id")``), or a function that both names
    ``config.json`` and parses JSON."""
    found = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop", "setdefault")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            key = node.args[0].value
        if key in ID_KEYS:
            found.append(f"{node.lineno}: reads {key!r}")
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            constants = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
            parses = any(
                isinstance(c, ast.Call)
                and isinstance(c.func, ast.Attribute)
                and c.func.attr in ("load", "loads")
                and isinstance(c.func.value, ast.Name)
                and c.func.value.id == "json"
                for c in ast.walk(node)
            )
            if "config.json" in constants and parses:
                found.append(f"{node.lineno}: {node.name}() parses config.json")
    return found


def test_config_json_has_one_reader() -> None:
    offenders = [
        f"{relative}:{where}"
        for relative, tree in sources(*USERS)
        for where in config_readers(tree)
    ]
    assert not offenders, (
        "config.json read outside engine/ids.py (use mindmirror.engine.ids.read_model_ids or "
        "read_model_config):\n" + "\n".join(offenders)
    )


def imports(tree: ast.Module, top_level_only: bool) -> Iterator[tuple[int, str]]:
    """(line, module) of the imports in ``tree``; at the top level, ``if TYPE_CHECKING:``
    blocks are skipped (never executed)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def test_the_engine_imports_only_the_contract_and_nothing_heavy_at_module_level() -> None:
    upward, heavy = [], []
    for relative, tree in sources("engine"):
        for line, module in imports(tree, top_level_only=False):
            if module.startswith("mindmirror") and not module.startswith(
                ("mindmirror.engine", "mindmirror.student")
            ):
                upward.append(f"{relative}:{line}: {module}")
            if module.split(".")[0] == "torch":
                heavy.append(f"{relative}:{line}: {module} (anywhere)")
        for line, module in imports(tree, top_level_only=True):
            root = module.split(".")[0]
            if root not in ("numpy", "mindmirror") and root not in sys.stdlib_module_names:
                heavy.append(f"{relative}:{line}: {module} (at module level)")
    assert not upward, "the engine imports a stage that uses it:\n" + "\n".join(upward)
    assert not heavy, "heavy imports in the engine:\n" + "\n".join(heavy)
