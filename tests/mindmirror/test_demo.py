"""``mindmirror demo``: the whole pipeline with tiny sizes, reuse of finished stages, errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from mindmirror.student.bundle import load_manifest
from mindmirror.student.formats import Verdict
from mindmirror.training.teacher.store import Store

from mindmirror.cli import main
from mindmirror.demo import DemoSettings, curl_line, run_demo, service_available

# Small enough for CI (a micro-sized run of every stage), big enough that each stage does
# real work: 240 problems x 2 CoTs x 1 self-evaluation, a few dozen optimizer steps.
TINY = DemoSettings(
    train=240,
    validation=30,
    test=40,
    steps=30,
    stage1_steps=10,
    batch_size=16,
    vocab_size=400,
    export_examples=12,
    threads=1,
    port=18431,
    keep_serving=False,
    progress=False,
)


def stage_map(result) -> dict[str, object]:
    return {stage.name: stage for stage in result.stages}


def store_calls(work_dir: Path) -> int:
    total = 0
    for path in (work_dir / "teacher").glob("*.sqlite"):
        with Store(path, create=False) as store:
            total += store.call_totals()["calls"].get("ok", 0)
    return total


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("demo") / "run"
    settings = replace(TINY, work_dir=work, serve=service_available())
    return settings, run_demo(settings)


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(first_run) -> None:
    settings, result = first_run
    stages = stage_map(result)
    expected = ["data", "teach", "distill", "evaluate", "export"]
    assert list(stages)[:5] == expected
    assert not any(stages[name].reused for name in expected)
    manifest = load_manifest(result.bundle)  # every checksum verifies
    assert manifest.task == "arith"
    assert manifest.self_evaluation is True
    assert manifest.provenance.training_steps == {"self_evaluation": 10, "cot": 30}
    assert manifest.provenance.teacher.startswith("simulated-arith(error_rate=0.25")
    assert set(manifest.exports["onnx"]["variants"]) == {"fp32", "int8"}
    assert manifest.exports["onnx"]["recommended"]["cpu"] == "int8"
    (evaluation,) = [e for e in manifest.evaluations if e.split == "test"]
    assert evaluation.examples == 40
    assert result.accuracy == evaluation.accuracy
    if not settings.serve:
        pytest.skip("the service package is not in this checkout yet: checked up to the export")
    # A real uvicorn server answered the three sample requests.
    assert stages["serve"].summary.endswith("3 sample requests answered")
    predict, explain, evaluate = result.exchanges
    assert [e["path"] for e in result.exchanges] == ["/v1/predict", "/v1/explain", "/v1/evaluate"]
    assert len(predict["response"]["predictions"]) == 1
    assert isinstance(explain["response"]["rationale"], str)
    assert evaluate["response"]["verdict"] in {v.value for v in Verdict} | {None}
    for exchange in result.exchanges:
        assert exchange["curl"].startswith(f"curl -s {result.url}{exchange['path']} ")


@pytest.mark.slow
def test_rerun_reuses_every_finished_stage(first_run) -> None:
    settings, first = first_run
    calls = store_calls(settings.work_dir)
    bundle_files = load_manifest(first.bundle).files
    again = run_demo(replace(settings, serve=False))
    stages = stage_map(again)
    assert all(stages[name].reused for name in ("data", "teach", "distill", "evaluate", "export"))
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


def test_curl_line_is_copy_pasteable() -> None:
    line = curl_line("http://127.0.0.1:8000", "/v1/predict", {"input": "Tom's 3 apples.\nHow?"})
    # The body is one shell word, quotes and newline escapes included.
    assert line.startswith("curl -s http://127.0.0.1:8000/v1/predict -H ")
    import shlex

    words = shlex.split(line)
    assert json.loads(words[-1]) == {"input": "Tom's 3 apples.\nHow?"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train-size", "0"], "--train-size must be at least 1"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--evals", "0"], "--evals must be at least 1"),
        (["--teacher", "openai", "--api-key-env", "MINDMIRROR_TEST_NO_SUCH_KEY"], "--base-url"),
        (
            ["--teacher", "openai", "--base-url", "http://127.0.0.1:9/v1"],
            "--teacher openai needs --model",
        ),
        (["--error-rate", "1.5"], "error_rate must be between 0 and 1"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    tmp_path: Path, capsys, argv: list[str], message: str
) -> None:
    work = tmp_path / "demo"
    code = main(["demo", "--work-dir", str(work), "--no-serve", "--no-progress", *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (work / "student").exists()


@pytest.mark.parametrize(
    ("argv", "label_source", "steps"),
    [
        ([], "human", (300, 1000)),
        (["--ablation"], "teacher", (150, 400)),
        (["--ablation", "--label-source", "human"], "human", (150, 400)),
        (["--label-source", "teacher", "--steps", "9"], "teacher", (300, 9)),
    ],
)
def test_the_demo_and_the_ablation_have_their_own_defaults(
    argv: list[str], label_source: str, steps: tuple[int, int]
) -> None:
    from mindmirror.cli import build_parser
    from mindmirror.demo import settings_from_args

    settings = settings_from_args(build_parser().parse_args(["demo", *argv]))
    assert settings.label_source == label_source
    assert (settings.stage1_steps, settings.steps) == steps
    assert settings.threads is None  # torch's choice


@pytest.mark.slow
def test_an_int8_export_refused_for_accuracy_falls_back_to_fp32(
    first_run, tmp_path, monkeypatch
) -> None:
    import functools

    import mindmirror.export.pipeline
    from mindmirror.student.bundle import write_manifest

    from mindmirror.demo import DemoPaths, export_stage, export_summary

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


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_demo_and_the_service_it_started(
    first_run, tmp_path, signal_name: str
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    import httpx

    settings, _ = first_run
    if not settings.serve:
        pytest.skip("the service package is not in this checkout")
    work = tmp_path / "copy"
    shutil.copytree(settings.work_dir, work)
    root = Path(__file__).resolve().parents[2]
    script = textwrap.dedent(
        f"""
        from dataclasses import replace
        from pathlib import Path

        from mindmirror.demo import run_demo
        from tests.mindmirror.test_demo import TINY

        settings = replace(TINY, work_dir=Path({str(work)!r}), keep_serving=True, port=18437)
        run_demo(settings, on_ready=lambda result: print("READY", result.url, flush=True))
        print("RETURNED", flush=True)
        """
    )
    demo = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # A shell's background jobs ignore SIGINT; a terminal's Ctrl-C does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = demo.stdout.readline()
        assert line.startswith("READY "), line
        url = line.split()[1]
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        os.kill(demo.pid, getattr(signal, signal_name))
        assert demo.wait(timeout=60) == 0
        assert demo.stdout.read().strip() == "RETURNED"  # run_demo finished its cleanup
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=5)  # the service is gone too
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def test_the_teach_stage_runs_an_openai_compatible_teacher_through_the_store(
    tmp_path: Path, monkeypatch
) -> None:
    from mindmirror.demo import DemoPaths, DemoState, data_stage, teach_stage
    from tests.fake_openai import FakeOpenAI, serve

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
