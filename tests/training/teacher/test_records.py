"""Import existing teacher outputs into the store; export reproduces them exactly."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from mindmirror.student.distillation import load_dsbs, load_minds_mirror, read_distillation_set
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import get_task
from mindmirror.training.teacher.records import export_run, import_records
from mindmirror.training.teacher.store import Store

SVAMP = get_task("svamp")
CQA = get_task("cqa")


def _dumps(records) -> list[dict]:  # type: ignore[no-untyped-def]
    return [record.model_dump(mode="json") for record in records]


def _dsbs_folder(root: Path) -> Path:
    folder = root / "svamp"
    (folder / "llm").mkdir(parents=True)
    rows = [
        {"input": "Tom has 3 apples and buys 4.\nHow many?", "label": "( 3.0 + 4.0 )"},
        {"input": "Ana had 10 books and gave 2.\nHow many?", "label": "( 10.0 - 2.0 )"},
        {"input": "Li had 5 pens.\nHow many?", "label": "( 5.0 )"},
    ]
    (folder / "svamp_train.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    completions = [
        "3 plus 4 is 7. The answer is (3 + 4).\n\nQ: next question",
        "Subtract. The answer is (10 - 2).",
        "No idea at all.",  # unparseable: kept, answer null
    ]
    (folder / "llm" / "train_CoT_0.json").write_text(json.dumps(completions[:2]))
    (folder / "llm" / "train_CoT_1.json").write_text(json.dumps(completions[2:]))
    return folder


def test_dsbs_import_then_export_reproduces_the_loader(tmp_path: Path) -> None:
    folder = _dsbs_folder(tmp_path)
    expected = load_dsbs(folder, "train", SVAMP)
    with Store(tmp_path / "s.sqlite") as store:
        run_id, cots, evals = import_records(store, expected, SVAMP, "dsbs")
        assert (cots, evals) == (3, 0)
        result = export_run(store, run_id, SVAMP)
        # Importing twice changes nothing (same run, same keys).
        assert import_records(store, expected, SVAMP, "dsbs")[0] == run_id
        assert store.call_totals()["calls"] == {"ok (import)": 6}
        assert store._db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 3
    assert result.complete
    assert _dumps(result.records) == _dumps(expected)
    assert result.records[2].cots[0].answer is None


def test_minds_mirror_release_round_trip(tmp_path: Path, shared_data: Path) -> None:
    datasets = shared_data / "Mind-s-Mirror-Distilling-LLM" / "datasets"
    for folder, split in itertools.product(
        (datasets / "svamp_tree1", datasets / "svamp_tree2"), ("train", "test")
    ):
        expected = load_minds_mirror(folder, split, SVAMP)
        with Store(tmp_path / f"{folder.name}-{split}.sqlite") as store:
            run_id, cots, evals = import_records(store, expected, SVAMP, f"mm:{split}")
            exported = export_run(store, run_id, SVAMP).records
        assert cots == sum(len(r.cots) for r in expected) > 0
        assert evals == sum(len(c.self_evaluations) for r in expected for c in r.cots) > 0
        assert _dumps(exported) == _dumps(expected)


def test_dsbs_release_round_trip(tmp_path: Path, shared_data: Path) -> None:
    folder = shared_data / "distilling-step-by-step" / "datasets" / "svamp"
    expected = load_dsbs(folder, "test", SVAMP)
    with Store(tmp_path / "s.sqlite") as store:
        run_id, cots, _ = import_records(store, expected, SVAMP, "dsbs:test")
        exported = export_run(store, run_id, SVAMP).records
    assert cots == len(expected) == 200
    assert _dumps(exported) == _dumps(expected)


def test_cqa_release_round_trip_keeps_choices(tmp_path: Path, shared_data: Path) -> None:
    folder = shared_data / "distilling-step-by-step" / "datasets" / "cqa"
    expected = load_dsbs(folder, "test", CQA)[:50]
    with Store(tmp_path / "s.sqlite") as store:
        run_id, _, _ = import_records(store, expected, CQA, "dsbs:cqa")
        exported = export_run(store, run_id, CQA).records
    assert _dumps(exported) == _dumps(expected)
    assert exported[0].fields["choices"]


def test_import_refuses_mixed_input(tmp_path: Path) -> None:
    records = load_dsbs(_dsbs_folder(tmp_path), "train", SVAMP)
    mixed = [records[0], records[1].model_copy(update={"teacher": "someone else"})]
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(MindmirrorError, match="several teachers"):
            import_records(store, mixed, SVAMP, "x")
        with pytest.raises(MindmirrorError, match="nothing to import"):
            import_records(store, [], SVAMP, "x")


def test_cli_import_and_export(tmp_path: Path) -> None:
    from mindmirror.cli import main

    folder = _dsbs_folder(tmp_path)
    store = tmp_path / "s.sqlite"
    assert main(["teach", "import", str(folder), "--store", str(store)]) == 0
    out = tmp_path / "set.jsonl"
    assert main(["teach", "export", "--store", str(store), "--out", str(out)]) == 0
    assert _dumps(read_distillation_set(out, SVAMP)) == _dumps(load_dsbs(folder, "train", SVAMP))
