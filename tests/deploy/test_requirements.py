"""The serving requirement files the images install: exact pins that agree with the project's
constraints and pyproject, a complete dependency closure (the Dockerfile installs them with
--no-deps), and nothing from the training, teacher or export stacks."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.support import REPO

REQUIREMENTS = REPO / "requirements"
VARIANTS = ("serve-cpu.txt", "serve-gpu.txt")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# Known training-side packages, whatever pyproject says today (a transitive pull of any of
# these would put the training stack into the image).
TRAINING_ONLY = {
    "torch",
    "torchvision",
    "triton",
    "transformers",
    "optimum",
    "optimum-onnx",
    "accelerate",
    "sentencepiece",
    "safetensors",
    "datasets",
    "peft",
    "openai",
    "onnx",
    "gguf",
    "llama-cpp-python",
    "ctranslate2",
    "matplotlib",
}
# The images' Python: Ubuntu 24.04's python3.12 (GPU) and python:3.12-slim (CPU), Linux x86_64.
IMAGE_ENVIRONMENT = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def pins(path) -> dict[str, str]:
    """name -> version; every non-comment line must be an exact `name==version` pin."""
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"{path.name}:{number} is not an exact pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in found, f"{path.name}: {name} pinned twice"
        found[name] = match.group(2)
    return found


def pyproject_pins(*groups: str) -> dict[str, str]:
    requirements = []
    for group in groups:
        if group == "base":
            requirements += PYPROJECT["project"]["dependencies"]
        else:
            requirements += PYPROJECT["project"]["optional-dependencies"][group]
    found = {}
    for text in requirements:
        requirement = Requirement(text)
        if requirement.name == "mindmirror":
            continue
        [spec] = requirement.specifier
        assert spec.operator == "==", text
        found[canonicalize_name(requirement.name)] = spec.version
    return found


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request) -> tuple[str, dict[str, str]]:
    return request.param, pins(REQUIREMENTS / request.param)


def test_pins_agree_with_the_project_constraints(variant):
    name, pinned = variant
    constraints = pins(REQUIREMENTS / "constraints.txt")
    for package, version in pinned.items():
        assert package in constraints, f"{name}: {package} missing from constraints.txt"
        assert constraints[package] == version, f"{name}: {package} {version} != constraints"


def test_pins_carry_pyprojects_base_and_serve_extras(variant):
    name, pinned = variant
    wanted = pyproject_pins("base", "serve")
    if name == "serve-cpu.txt":
        wanted |= pyproject_pins("cpu")
    for package, version in wanted.items():
        assert pinned.get(package) == version, f"{name}: {package} should be =={version}"


def test_cpu_and_gpu_differ_only_in_the_onnxruntime_wheel():
    cpu = pins(REQUIREMENTS / "serve-cpu.txt")
    gpu = pins(REQUIREMENTS / "serve-gpu.txt")
    assert set(cpu) ^ set(gpu) == {"onnxruntime", "onnxruntime-gpu"}
    assert {k: v for k, v in cpu.items() if k != "onnxruntime"} == {
        k: v for k, v in gpu.items() if k != "onnxruntime-gpu"
    }
    # Both wheels install the same `onnxruntime` module: never in one environment.
    assert "onnxruntime-gpu" not in cpu
    assert "onnxruntime" not in gpu


def test_no_training_only_package(variant):
    name, pinned = variant
    extras = PYPROJECT["project"]["optional-dependencies"]
    training_side = set()
    for group in ("train", "teach", "export", "ctranslate2", "demo"):
        training_side |= {canonicalize_name(Requirement(r).name) for r in extras[group]}
    serving_side = set(pyproject_pins("base", "serve", "cpu"))
    forbidden = (training_side - serving_side) | {canonicalize_name(n) for n in TRAINING_ONLY}
    assert {"torch", "transformers", "optimum", "openai", "sentencepiece"} <= forbidden
    leaked = sorted(set(pinned) & forbidden)
    assert not leaked, f"{name} pulls training-only packages: {leaked}"
    # Nor CUDA libraries from PyPI: the GPU image gets them from the nvidia/cuda base image.
    assert not [p for p in pinned if p.startswith("nvidia-")]


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def test_requirements_are_a_complete_closure(variant):
    """Every dependency (for the image's Python and platform) of every pinned package is pinned
    too, at a version that satisfies it. Read from the metadata installed here, which is the
    same release (checked) for everything but onnxruntime-gpu, which this machine must never
    install; the image build's `pip check` covers that one."""
    name, pinned = variant
    checked = 0
    for package, version in pinned.items():
        if package == "onnxruntime-gpu":
            continue
        have = installed_version(package)
        if have is None or Version(have) != Version(version):
            pytest.fail(f"{package}=={version} is not what this environment has ({have})")
        for text in importlib.metadata.requires(package) or []:
            requirement = Requirement(text)
            if requirement.marker and not Marker(str(requirement.marker)).evaluate(
                IMAGE_ENVIRONMENT
            ):
                continue
            dependency = canonicalize_name(requirement.name)
            assert dependency in pinned, f"{name}: {package} needs {text}, which is not pinned"
            assert requirement.specifier.contains(pinned[dependency], prereleases=True), (
                f"{name}: {package} needs {text}, pinned {pinned[dependency]}"
            )
            checked += 1
    assert checked > 20


def test_serve_gpu_records_the_cuda_build_it_relies_on():
    text = (REQUIREMENTS / "serve-gpu.txt").read_text()
    assert "cuda_version = '13.0'" in text
    assert pins(REQUIREMENTS / "serve-gpu.txt")["onnxruntime-gpu"] == "1.31.1"
