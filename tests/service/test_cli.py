from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mindmirror.cli import build_parser, main


def test_serve_is_registered_with_its_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "bundle", "--port", "9000", "--backend", "onnx"])
    assert args.command == "serve"
    assert (args.port, args.backend, args.host) == (9000, "onnx", None)
    assert callable(args.handler)


def test_bad_bundle_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "error: bundle directory not found" in capsys.readouterr().err


def test_bad_setting_is_a_one_line_error(tiny_bundle: Path, capsys) -> None:
    assert main(["serve", str(tiny_bundle), "--max-batch-size", "0"]) == 2
    assert "MINDMIRROR_MAX_BATCH_SIZE" in capsys.readouterr().err


def test_python_m_service_reads_the_environment(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mindmirror.service"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "MINDMIRROR_BUNDLE": str(tmp_path / "nope")},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert "error: bundle directory not found" in result.stderr
    assert "Traceback" not in result.stderr
