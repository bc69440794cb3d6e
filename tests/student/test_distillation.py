import json
from pathlib import Path

import pytest
from mindmirror.student.distillation import (
    DistillationRecord,
    cot_from_text,
    detect_layout,
    load_distillation_data,
    load_dsbs,
    load_minds_mirror,
    load_task_examples,
    parse_stats,
    read_distillation_set,
    self_evaluation_from_text,
    task_name_of,
    write_distillation_set,
)
from mindmirror.student.formats import Verdict
from mindmirror.student.jsonl import DataFileError
from mindmirror.student.tasks import get_task

SVAMP = get_task("svamp")


def _record(record_id: str = "a") -> DistillationRecord:
    cot = cot_from_text(SVAMP, "2 and 3 make 5. The answer is (2 + 3).")
    cot.self_evaluations = [
        self_evaluation_from_text(
            "Evaluation:\nFine.\nEvaluation result: the given answer is correct."
        ),
        self_evaluation_from_text("no verdict here"),
    ]
    return DistillationRecord(
        id=record_id,
        task="svamp",
        question="2 + 3?",
        label="2 + 3",
        cots=[cot, cot_from_text(SVAMP, "I give up.")],
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    assert write_distillation_set(path, [_record("a"), _record("b")]) == 2
    records = read_distillation_set(path, SVAMP)
    assert [r.id for r in records] == ["a", "b"]
    assert records[0].cots[0].answer == "2 + 3"
    assert records[0].cots[0].self_evaluations[0].verdict is Verdict.CORRECT
    assert records[0].cots[1].answer is None  # unparseable, kept and flagged
    stats = parse_stats(SVAMP, records)
    assert (stats.cots, stats.cots_parsed, stats.cots_correct) == (4, 2, 2)
    assert (stats.self_evaluations, stats.self_evaluations_parsed) == (4, 2)
    assert detect_layout(path) == "jsonl"


def test_malformed_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    good = _record().model_dump_json()
    path.write_text(good + "\n\n{not json\n")
    with pytest.raises(DataFileError, match=r"set.jsonl:3: malformed JSON"):
        read_distillation_set(path)


def test_schema_error_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    bad = _record().model_dump(mode="json")
    bad["cots"][0]["self_evaluations"][0]["verdict"] = "maybe"
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(DataFileError, match=r":1: .*cots\.0\.self_evaluations\.0\.verdict"):
        read_distillation_set(path)


def test_duplicate_ids_and_wrong_task(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    write_distillation_set(path, [_record("a"), _record("a")])
    with pytest.raises(DataFileError, match="duplicate id 'a'"):
        read_distillation_set(path)
    write_distillation_set(path, [_record("a")])
    with pytest.raises(DataFileError, match="expected 'cqa'"):
        read_distillation_set(path, get_task("cqa"))


def test_task_name_of_reads_what_the_data_says(tmp_path: Path) -> None:
    write_distillation_set(tmp_path / "set.jsonl", [_record("a")])
    assert task_name_of(tmp_path / "set.jsonl") == "svamp"
    (tmp_path / "plain.jsonl").write_text('{"input": "2 + 3?", "label": "5"}\n')
    assert task_name_of(tmp_path / "plain.jsonl") is None
    for folder, task in (("anli1", "anli"), ("cqa", "cqa"), ("svamp_tree2", "svamp"), ("x", None)):
        (tmp_path / folder / "llm").mkdir(parents=True)
        (tmp_path / folder / "llm" / "train_CoT_0.json").write_text("[]")
        assert task_name_of(tmp_path / folder) == task


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="not found"):
        read_distillation_set(tmp_path / "nope.jsonl")


def test_task_examples_bad_label_names_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"input": "q", "label": "1 + 1"}\n{"input": "q2", "label": "two"}\n')
    with pytest.raises(DataFileError, match=r"data.jsonl:2: not an arithmetic equation"):
        load_task_examples(SVAMP, path)


# ----- the public releases in ../shared/data -------------------------------------------------
# Reference pseudo-label accuracies recomputed from these files with distilling-step-by-step's
# own strict parser: SVAMP 73.5% train, CQA 74.3% train, ANLI 65.6% test. Our parser
# normalizes case and spacing and maps answer letters to choices, so CQA and ANLI come out
# slightly higher; it also reads an SVAMP answer such as "(12 - 2) - 7" whole where the strict
# parser keeps only its first group, so SVAMP comes out higher (74.5% train, 78% test). The
# bounds below pin our figures.
@pytest.mark.parametrize(
    ("folder", "task", "split", "count", "min_parse", "accuracy"),
    [
        ("svamp", "svamp", "train", 800, 0.96, (0.744, 0.746)),
        ("svamp", "svamp", "test", 200, 0.96, (0.775, 0.785)),
        ("cqa", "cqa", "train", 9741, 0.999, (0.74, 0.78)),
        ("anli1", "anli", "test", 1000, 0.999, (0.656, 0.67)),
    ],
)
def test_dsbs_release_parses(
    shared_data: Path, folder, task, split, count, min_parse, accuracy
) -> None:
    records = load_dsbs(shared_data / "distilling-step-by-step/datasets" / folder, split)
    stats = parse_stats(get_task(task), records)
    assert stats.examples == count
    assert stats.cot_parse_rate >= min_parse
    assert accuracy[0] <= stats.teacher_accuracy <= accuracy[1]


def test_dsbs_missing_split_is_explained(shared_data: Path) -> None:
    with pytest.raises(DataFileError, match="no 'train' inputs for anli1"):
        load_dsbs(shared_data / "distilling-step-by-step/datasets/anli1", "train")


@pytest.mark.parametrize("folder", ["svamp_tree1", "svamp_tree2"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_minds_mirror_release_parses(shared_data: Path, folder: str, split: str) -> None:
    path = shared_data / "Mind-s-Mirror-Distilling-LLM/datasets" / folder
    assert detect_layout(path) == "minds_mirror"
    records = load_distillation_data(path, split)
    stats = parse_stats(SVAMP, records)
    assert (stats.examples, stats.cots, stats.self_evaluations) == (2, 10, 50)
    assert stats.cot_parse_rate == 1.0
    assert stats.self_evaluation_parse_rate == 1.0
    if folder == "svamp_tree1":  # tree1 carries the human labels
        assert all(r.label for r in records)
        assert stats.teacher_accuracy == 1.0
    first = records[0].cots[0].self_evaluations[0]
    assert not first.rationale.startswith("Evaluation:")
    assert "Evaluation result" not in first.rationale


def test_minds_mirror_flat_file_must_match_log(shared_data: Path, tmp_path: Path) -> None:
    import shutil

    source = shared_data / "Mind-s-Mirror-Distilling-LLM/datasets/svamp_tree2"
    copy = tmp_path / "svamp_tree2"
    shutil.copytree(source, copy)
    rows = (copy / "svamp_tree2_train.json").read_text().splitlines()
    rows[0] = rows[0].replace('"correct"', '"wrong"')
    (copy / "svamp_tree2_train.json").chmod(0o644)
    (copy / "svamp_tree2_train.json").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFileError, match="does not match the log"):
        load_minds_mirror(copy, "train")


def test_written_set_is_readable_by_other_users(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    write_distillation_set(path, [_record("a")])
    assert path.stat().st_mode & 0o044 == 0o044
