"""``run_demo``: the whole pipeline with tiny sizes, and the reuse of finished stages."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from mindmirror.student.bundle import load_manifest
from mindmirror.student.formats import Verdict
from mindmirror.training.teacher.store import Store

from mindmirror.demo.pipeline import run_demo


def stage_map(result) -> dict[str, object]:
    return {stage.name: stage for stage in result.stages}


def store_calls(work_dir: Path) -> int:
    total = 0
    for path in (work_dir / "teacher").glob("*.sqlite"):
        with Store(path, create=False) as store:
            total += store.call_totals()["calls"].get("ok", 0)
    return total


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(first_run) -> None:
    settings, result = first_run
    stages = stage_map(result)
    expected = ["data", "teach", "distill", "evaluate", "export", "trust"]
    assert list(stages)[:6] == expected
    assert not any(stages[name].reused for name in expected)
    manifest = load_manifest(result.bundle)  # every checksum verifies
    assert manifest.task == "arith"
    assert manifest.self_evaluation is True
    assert manifest.provenance.training_steps == {"self_evaluation": 10, "cot": 30}
    assert manifest.provenance.teacher.startswith("simulated-arith(error_rate=0.25")
    # Gold labels, and only the teacher's rationales that reach them (the demo's default).
    assert manifest.provenance.label_source == "human"
    assert manifest.provenance.drop_disagreeing is True
    assert set(manifest.exports["onnx"]["variants"]) == {"fp32", "int8"}
    assert manifest.exports["onnx"]["recommended"]["cpu"] == "int8"
    (evaluation,) = [e for e in manifest.evaluations if e.split == "test"]
    assert evaluation.examples == 40
    assert result.accuracy == evaluation.accuracy
    # The trust stage judged reasonings of known truth and checked the explanations.
    trust = stages["trust"].summary
    assert "verdict AUROC" in trust
    assert "on 24 reasonings" in trust  # 12 problems, 2 reasonings each
    assert "explain consistent" in trust
    assert manifest.verdict_calibration is not None
    if not settings.serve:
        pytest.skip("the service package is not in this checkout yet: checked up to the export")
    # A real uvicorn server answered the three sample requests.
    assert stages["serve"].summary.endswith("3 sample requests answered")
    predict, explain, evaluate = result.exchanges
    assert [e["path"] for e in result.exchanges] == ["/v1/predict", "/v1/explain", "/v1/evaluate"]
    assert len(predict["response"]["predictions"]) == 1
    assert isinstance(explain["response"]["rationale"], str)
    assert evaluate["response"]["verdict"] in {Verdict.CORRECT.value, Verdict.WRONG.value}
    assert 0.0 <= evaluate["response"]["score"] <= 1.0
    for exchange in result.exchanges:
        assert exchange["curl"].startswith(f"curl -s {result.url}{exchange['path']} ")


@pytest.mark.slow
def test_rerun_reuses_every_finished_stage(first_run) -> None:
    settings, first = first_run
    calls = store_calls(settings.work_dir)
    bundle_files = load_manifest(first.bundle).files
    again = run_demo(replace(settings, serve=False))
    stages = stage_map(again)
    reusable = ("data", "teach", "distill", "evaluate", "export", "trust")
    assert all(stages[name].reused for name in reusable)
    assert store_calls(settings.work_dir) == calls  # the teacher made no call
    assert load_manifest(again.bundle).files == bundle_files  # nothing rewritten
    assert again.accuracy == first.accuracy


@pytest.mark.slow
def test_changed_or_broken_outputs_redo_only_what_depends_on_them(first_run, tmp_path) -> None:
    settings, _ = first_run
    work = tmp_path / "copy"
    shutil.copytree(settings.work_dir, work)
    settings = replace(settings, work_dir=work, serve=False)
    calls = store_calls(work)

    # A bigger test split: new data files and a new evaluation; the training side is reused.
    bigger = run_demo(replace(settings, test=50))
    stages = stage_map(bigger)
    assert not stages["data"].reused
    assert [stages[name].reused for name in ("teach", "distill", "export")] == [True] * 3
    assert not stages["evaluate"].reused
    assert "50 problems" in stages["evaluate"].summary
    assert store_calls(work) == calls

    # A damaged bundle does not verify: the student is trained again (and exported again).
    weights = work / "student" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    redone = stage_map(run_demo(replace(settings, test=50)))
    assert redone["teach"].reused
    assert not redone["distill"].reused
    assert not redone["export"].reused
    load_manifest(work / "student")
    assert store_calls(work) == calls
