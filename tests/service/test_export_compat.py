"""The service serves exactly what `mindmirror export` writes (the real export, not the test
fixture's shortcut): the recommended variant by default, and every other variant on request."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mindmirror.service.backends import Row
from mindmirror.service.runtime import StudentModel
from mindmirror.service.settings import Settings
from mindmirror.student.bundle import load_manifest

from tests.service.conftest import running_server


@pytest.mark.slow
def test_serves_every_variant_mindmirror_export_writes(
    tiny_bundle: Path, tmp_path: Path, questions: list[str]
) -> None:
    pytest.importorskip("ctranslate2")
    from mindmirror.export.pipeline import ExportOptions, run_export

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    run_export(
        ExportOptions(
            bundle=bundle,
            variants=("fp32", "int8"),
            ctranslate2=("fp32",),
            max_examples=4,
            max_explain=2,
            max_accuracy_drop=100.0,
            progress=False,
        )
    )
    recommended = load_manifest(bundle).exports["onnx"]["recommended"]["cpu"]
    with running_server(bundle) as running, running.client() as client:
        info = client.get("/v1/model").json()
        assert (info["backend"], info["variant"]) == ("onnx", recommended)
        response = client.post("/v1/predict", json={"inputs": questions[:3]})
        assert response.status_code == 200
        assert len(response.json()["predictions"]) == 3

    def generate(backend: str, variant: str = "auto") -> list[list[int]]:
        model = StudentModel.open(Settings(bundle=bundle, backend=backend, variant=variant))
        model.setup()
        prefixes = model.manifest.prefixes
        texts = [prefixes.cot_input(q, "explain") for q in questions[:4]]
        ids = model.encode_inputs(texts, ["input"] * len(texts))
        return model.generate([Row(row, 48) for row in ids])

    reference = generate("pytorch")
    assert generate("onnx", "fp32") == reference
    assert generate("ctranslate2", "fp32") == reference
    int8 = generate("onnx", "int8")
    assert len(int8) == 4
    assert all(len(ids) > 0 for ids in int8)
