from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.tiny_student import make_problems


@pytest.fixture(scope="session")
def labelled_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Held-out svamp-shaped task JSONL with labels (problems the tiny student never saw)."""
    path = tmp_path_factory.mktemp("data") / "validation.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for index, problem in enumerate(make_problems(16, seed=7)):
            record = {"id": f"val-{index}", "input": problem.question, "label": problem.label}
            handle.write(json.dumps(record) + "\n")
    return path


@pytest.fixture(scope="session")
def exported(tiny_bundle: Path, labelled_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the tiny bundle exported once (all ONNX variants + CTranslate2 int8 and fp32).

    Read-only for tests: copy it before modifying. Returns (bundle path, ExportResult).
    """
    from mindmirror.export.pipeline import ExportOptions, run_export

    bundle = tmp_path_factory.mktemp("exported") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    result = run_export(
        ExportOptions(
            bundle=bundle,
            data=labelled_data,
            ctranslate2=("int8", "fp32"),
            max_explain=4,
            # The tiny student is weak (a few points are one example): the accuracy gate is
            # tested on its own; here every variant must be written so it can be inspected.
            max_accuracy_drop=100.0,
            progress=False,
        )
    )
    return bundle, result
