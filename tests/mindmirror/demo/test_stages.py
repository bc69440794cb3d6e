"""The demo's stages one at a time: the export's int8 fallback, and the teach stage as a caller of
``teach(config)`` (any teacher; the same set as ``mindmirror teach run``)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from mindmirror.student.bundle import load_manifest

from mindmirror.cli import main
from mindmirror.demo.settings import DemoPaths, DemoState
from mindmirror.demo.stages import data_stage, export_stage, export_summary, teach_stage
from tests.fake_openai import FakeOpenAI, serve
from tests.mindmirror.demo.tiny import TINY


@pytest.mark.slow
def test_an_int8_export_refused_for_accuracy_falls_back_to_fp32(
    first_run, tmp_path, monkeypatch
) -> None:
    import functools

    import mindmirror.export.pipeline
    from mindmirror.student.bundle import write_manifest

    settings, _ = first_run
    work = tmp_path / "copy"
    shutil.copytree(settings.work_dir, work)
    bundle = work / "student"
    shutil.rmtree(bundle / "onnx")
    write_manifest(bundle, load_manifest(bundle, verify=False).model_copy(update={"exports": {}}))
    # An accuracy gate no quantized variant can pass: int8 is refused, fp32 is checked by
    # parity (not accuracy) and still exported.
    strict = functools.partial(mindmirror.export.pipeline.ExportOptions, max_accuracy_drop=-1.0)
    monkeypatch.setattr(mindmirror.export.pipeline, "ExportOptions", strict)

    record, reused = export_stage(replace(settings, work_dir=work), DemoPaths(work))
    assert not reused
    assert set(record["variants"]) == {"fp32"}
    assert record["recommended"]["cpu"] == "fp32"
    assert export_summary(record).endswith("(int8 refused: it lost too much accuracy)")
    assert set(load_manifest(bundle).exports["onnx"]["variants"]) == {"fp32"}


def test_the_teach_stage_runs_an_openai_compatible_teacher_through_the_store(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MINDMIRROR_TEST_KEY", "sk-test")
    fake = FakeOpenAI()
    with serve(fake) as url:
        settings = replace(
            TINY,
            work_dir=tmp_path / "demo",
            train=6,
            validation=2,
            test=2,
            teacher="openai",
            model="fake-teacher",
            base_url=url,
            api_key_env="MINDMIRROR_TEST_KEY",
            serve=False,
        )
        paths, state = DemoPaths(settings.work_dir), DemoState(settings.work_dir)
        data_stage(settings, paths, state)
        _, summary, reused = teach_stage(settings, paths, state)
        calls = len(fake.successful())
        # A rerun finds every answer in the store and asks the teacher nothing.
        _, _, reused_again = teach_stage(settings, paths, state)
    assert not reused
    assert reused_again
    assert len(fake.successful()) == calls > 0
    assert "12 chains of thought, 12 self-evaluations" in summary
    assert {log.authorization for log in fake.successful()} == {"Bearer sk-test"}
    records = [json.loads(line) for line in paths.distill_set.read_text().splitlines()]
    assert [len(record["cots"]) for record in records] == [2] * 6
    assert all(record["teacher"] == "fake-teacher" for record in records)


def test_the_teach_stage_writes_the_set_mindmirror_teach_run_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One wiring: the demo's teacher run is `mindmirror teach run` with the demo's options.
    settings = replace(TINY, work_dir=tmp_path / "demo", train=20, validation=2, test=2, seed=3)
    paths, state = DemoPaths(settings.work_dir), DemoState(settings.work_dir)
    data_stage(settings, paths, state)
    _, summary, reused = teach_stage(settings, paths, state)
    assert not reused
    assert "40 chains of thought, 40 self-evaluations" in summary
    out = tmp_path / "cli.jsonl"
    options = [f"{key}={value}" for key, value in settings.teacher_options().items()]
    argv = [
        "teach", "run", "--teacher", "simulated", "--task", "arith",
        "--data", str(paths.split("train")), "--store", str(tmp_path / "cli.sqlite"),
        "--cots", "2", "--evals", "1", "--seed", "3", "--no-progress", "--out", str(out),
        *(f"--teacher-option={option}" for option in options),
    ]  # fmt: skip
    assert main(argv) == 0
    assert out.read_text() == paths.distill_set.read_text()
    capsys.readouterr()
    # The stage's second run finds every answer in its store and asks the teacher nothing.
    _, summary, reused = teach_stage(settings, paths, state)
    assert reused
    assert "(0 new samples, 80 from the store)" in summary
