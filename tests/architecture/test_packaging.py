"""The distribution has one import namespace, ``mindmirror``.

The stage folders stay at the top of the repository and are installed as ``mindmirror.<folder>``
(setuptools ``package-dir`` in pyproject.toml). These tests keep that true: the built wheel's
only top-level package is ``mindmirror``, it holds every package folder of the tree, it imports
from outside the repository, and no code imports a stage by its bare folder name (which would
work in the repository by accident and fail, or pick up a user's own ``service``, installed).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
#: stage folder -> its import name, e.g. "service" -> "mindmirror.service"
FOLDERS = {folder: name for name, folder in PACKAGE_DIR.items() if name != "mindmirror"}
CODE_DIRS = ("mindmirror", *FOLDERS, "tests", "bench")


def _python_files() -> list[Path]:
    files = []
    for top in CODE_DIRS:
        files += [p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def _packages_on_disk() -> set[str]:
    """Every folder with an ``__init__.py`` under a mapped root, as its import name."""
    names = set()
    for name, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            names.add(".".join([name, *relative.parts]) if relative.parts else name)
    return names


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == _packages_on_disk()


def test_no_code_imports_a_stage_by_its_bare_folder_name() -> None:
    bare = set(FOLDERS)
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in bare:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert offenders == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what the Dockerfile copies, so the build leaves nothing in the
    # checkout; no build isolation: the pinned setuptools of this environment builds it offline.
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in PACKAGE_DIR.values():
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    result = subprocess.run(
        [*command, "-q", "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("mindmirror-*.whl")
    return built


def test_the_wheel_has_one_top_level_package_holding_every_folder(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"mindmirror"}
    packages = {
        name.rsplit("/", 1)[0].replace("/", ".") for name in names if name.endswith("/__init__.py")
    }
    assert packages == _packages_on_disk()
    assert not any(name.startswith(("mindmirror/tests/", "mindmirror/bench/")) for name in names)


def test_the_wheel_imports_from_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    code = (
        "import mindmirror.student.tasks, mindmirror.service.settings, mindmirror.cli\n"
        "import mindmirror.student.tasks as t, mindmirror.service.settings as s\n"
        "print(t.__file__); print(s.__file__); mindmirror.cli.build_parser()\n"
    )
    # The wheel's folder first on the path, run from a folder that is not the repository, so
    # neither the checkout nor its editable install can answer the imports.
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for line in result.stdout.split():
        assert Path(line).is_relative_to(tmp_path / "site"), line
