"""The `mindmirror export` command line: light import, clear refusals, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mindmirror.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_export_cli_is_light_to_import():
    code = (
        "import sys, mindmirror.cli as c; c.build_parser(); "
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'transformers', 'optimum') "
        "if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--variants", "--ctranslate2", "--data", "--max-accuracy-drop", "--force"):
        assert option in out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--variants", "int8"], "fp32 variant is always exported"),
        (["--variants", "fp32,bf17"], "unknown ONNX variant(s) bf17"),
        (["--ctranslate2", "--ctranslate2-variants", "int4"], "unknown CTranslate2 variant"),
        (["--data", "/nonexistent/validation.jsonl"], "not found"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--task", "no-such-task"], "unknown task 'no-such-task'"),
    ],
)
def test_bad_options_are_refused_with_a_message(tiny_bundle, capsys, arguments, message):
    before = sorted(p.name for p in tiny_bundle.iterdir())
    assert main(["export", str(tiny_bundle), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
    # Refused before anything was written (not even the lock file of a running export).
    assert sorted(p.name for p in tiny_bundle.iterdir()) == before


def test_not_a_bundle_is_refused(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "not a mindmirror bundle" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
