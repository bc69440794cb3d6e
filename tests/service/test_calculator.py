"""The calculator in the service: text → ids (``TextCodec``, ``CalculatorForcer``), the same
forced tokens from the ONNX and PyTorch backends, when it runs, and what ``/v1/explain``
reports about each rationale (``Inference.explain`` with a scripted queue)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mindmirror.engine.ids import read_model_ids
from mindmirror.service.backends import Row
from mindmirror.service.backends.onnx import OnnxBackend
from mindmirror.service.inference import Inference
from mindmirror.service.runtime import CalculatorForcer, StudentModel
from mindmirror.service.settings import Settings
from mindmirror.service.text import TextCodec
from mindmirror.student.tasks import get_task
from mindmirror.student.tasks.base import RationaleCheck

from tests.service.test_backends import open_backend
from tests.service.test_inference import (
    QUESTION,
    SURE_RIGHT,
    FakeQueue,
    make_student,
    run,
    sampling,
)
from tests.tiny_student import make_problems

svamp = get_task("svamp")


def check_free(text: str) -> RationaleCheck:
    return svamp.check_rationale(text, None)


@pytest.fixture(scope="module")
def codec(onnx_bundle: Path) -> TextCodec:
    """The tiny bundle's SentencePiece tokenizer (digits split one per piece)."""
    return TextCodec(onnx_bundle, read_model_ids(onnx_bundle))


def ids_of(codec: TextCodec, text: str) -> list[int]:
    return codec.encode([text])[0][:-1]  # generated ids carry no end token


# ----- text -> ids ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text", ["Tom had 23 apples and got 5 more, so 23 + 5 =", "so 23 + 5 = ", "so 61 - 7 ="]
)
def test_forced_ids_tokenize_as_the_text_would_in_context(codec: TextCodec, text: str) -> None:
    ids = ids_of(codec, text)
    forced = svamp.calculator(codec.decode([ids])[0])
    assert forced is not None
    tail = codec.continuation(ids, codec.decode([ids])[0], forced)
    assert [*ids, *tail] == ids_of(codec, text + forced)
    assert codec.decode([[*ids, *tail]])[0].endswith(f"= {forced.strip()}")


def test_ids_the_tokenizer_would_not_write_get_the_forced_text_alone(codec: TextCodec) -> None:
    text = "so 23 + 5 ="
    canonical = ids_of(codec, text)
    # The same text spelled with other pieces: "so" as "s" + "o".
    vocabulary = codec.vocabulary()
    assert canonical[0] == vocabulary["so"]
    respelled = [vocabulary["s"], vocabulary["o"], *canonical[1:]]
    assert codec.decode([respelled]) == codec.decode([canonical])
    assert respelled != canonical
    forced = codec.continuation(respelled, text, " 28")
    assert forced == ids_of(codec, " 28")


def test_the_forcer_decodes_only_rows_that_may_end_an_equals_sign(codec: TextCodec) -> None:
    decoded: list[list[int]] = []

    class Counting(TextCodec):
        def decode(self, sequences):
            decoded.extend(list(s) for s in sequences)
            return super().decode(sequences)

    counting = Counting.__new__(Counting)
    counting.__dict__.update(codec.__dict__)
    forcer = CalculatorForcer(counting, svamp.calculator)
    text = "so 23 + 5 = 28 apples."
    ids = ids_of(codec, text)
    forced = [forcer(ids[:n]) for n in range(1, len(ids) + 1)]
    equals = len(ids_of(codec, "so 23 + 5 =")) - 1
    whole = ids_of(codec, "so 23 + 5 = 28")
    # After "=" the forcer asks for " 28"; after "= " (the space is a piece here) for "28".
    assert codec.decode([ids[: equals + 2]]) == ["so 23 + 5 = "]
    assert forced[equals] == whole[equals + 1 :]
    assert forced[equals + 1] == whole[equals + 2 :]
    assert [f for n, f in enumerate(forced) if n not in (equals, equals + 1)] == [[]] * (
        len(ids) - 2
    )
    assert len(decoded) == 2  # only the rows whose last piece ends "=" (past a space)
    assert forcer([]) == []
    assert CalculatorForcer(codec, svamp.calculator)(ids_of(codec, "so 5 / 0 =")) == []


# ----- backends ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rationale_inputs(onnx_bundle: Path, codec: TextCodec) -> list[list[int]]:
    student = StudentModel.open(Settings(bundle=onnx_bundle))
    prefixes = student.manifest.prefixes
    questions = [p.question for p in make_problems(6, seed=31)]
    return codec.encode([prefixes.cot_input(q, "explain") for q in questions])


class Scripted:
    """Forces fixed ids once the row has three tokens."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def __call__(self, generated) -> list[int]:
        return list(self.ids) if len(generated) == 3 else []


def test_onnx_and_pytorch_force_the_same_tokens(
    onnx_bundle: Path, codec: TextCodec, rationale_inputs: list[list[int]]
) -> None:
    onnx, _ = open_backend(onnx_bundle, "onnx")
    pytorch, _ = open_backend(onnx_bundle, "pytorch")
    calculator = CalculatorForcer(codec, svamp.calculator)

    def rows(forcer) -> list[Row]:
        return [Row(list(ids), 48, forcer=forcer) for ids in rationale_inputs]

    free = onnx(rows(None))
    calculated = onnx(rows(calculator))
    assert pytorch(rows(calculator)) == calculated
    # The tiny student's own sums are mostly wrong ("17 + 7 = 13"); calculated, every step it
    # states is right.
    checks = [svamp.check_rationale(text, None) for text in codec.decode(calculated)]
    assert all(c.steps_right == c.steps for c in checks)
    assert sum(c.steps for c in checks) >= 3
    assert any(c.steps_right < c.steps for c in map(check_free, codec.decode(free)))
    scripted = Scripted(ids_of(codec, " 9 9"))
    forced = onnx(rows(scripted))
    assert pytorch(rows(scripted)) == forced
    assert all(f[3 : 3 + len(scripted.ids)] == scripted.ids for f in forced)
    assert forced != free
    # A sampled PyTorch row obeys its forcer too (its samples are torch's, not the engine's).
    sampled = [Row(list(rationale_inputs[0]), 48, temperature=1.0, seed=3, forcer=scripted)]
    assert pytorch(sampled)[0][3 : 3 + len(scripted.ids)] == scripted.ids


def test_the_calculator_runs_only_where_it_can(
    onnx_bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = StudentModel.open(Settings(bundle=onnx_bundle))
    assert model.calculator
    assert model.info()["calculator"]["enabled"] is True
    assert isinstance(model.rationale_forcer(), CalculatorForcer)
    off = StudentModel.open(Settings(bundle=onnx_bundle, calculator=False))
    assert (off.calculator, off.rationale_forcer()) == (False, None)
    assert off.info()["calculator"] == {
        "enabled": False,
        "note": "turned off (MINDMIRROR_CALCULATOR=false)",
    }
    # A backend that cannot force tokens (as CTranslate2): off, said once at start.
    monkeypatch.setattr(OnnxBackend, "supports_forcing", False)
    with caplog.at_level(logging.WARNING, logger="mindmirror.service"):
        unable = StudentModel.open(Settings(bundle=onnx_bundle))
    assert unable.rationale_forcer() is None
    assert unable.calculator_note == "the onnx backend cannot force tokens"
    warnings = [r.getMessage() for r in caplog.records if "calculator" in r.getMessage()]
    assert warnings == [
        "/v1/explain runs without the calculator: the onnx backend cannot force tokens"
    ]


def test_ctranslate2_says_it_cannot_force() -> None:
    from mindmirror.service.backends.ctranslate2 import CTranslate2Backend
    from mindmirror.service.backends.pytorch import PyTorchBackend

    assert (OnnxBackend.supports_forcing, PyTorchBackend.supports_forcing) == (True, True)
    assert CTranslate2Backend.supports_forcing is False


# ----- /v1/explain ------------------------------------------------------------------------------
class ForcingBackend:
    """Stands in for a backend that forces tokens; the inference layer never calls it."""

    name = "fake"
    supports_forcing = True

    def __call__(self, rows):
        raise AssertionError("the inference layer called the backend directly")


def calculating_student(root: Path, calculator: bool = True) -> StudentModel:
    base = make_student(root)
    return StudentModel(
        base.bundle,
        base.manifest,
        base.task,
        base.codec,
        ForcingBackend(),  # type: ignore[arg-type]
        base.limits,
        calculator=calculator,
    )


def test_explain_lends_the_calculator_to_rationale_rows_and_checks_them(tmp_path: Path) -> None:
    student = calculating_student(tmp_path / "bundle")
    queue = FakeQueue(student, ["3 + 4", "Tom had 3 and got 4, so 3 + 4 = 8."])
    result = run(Inference(student, 4, 8).explain(QUESTION, None, sampling(1), queue))
    [(_, rows, _)] = queue.calls
    assert rows[0].forcer is None
    assert rows[1].forcer is student.rationale_forcer()
    assert rows[1].forcer is not None
    assert result.chosen.check == RationaleCheck(False, 1, 0, "8", "3 + 4 = 8 is wrong: 3 + 4 is 7")
    assert result.chosen.consistent is False
    # The byte-level forcer writes what the calculator says.
    forcer = student.rationale_forcer()
    forced = forcer(student.codec.encode(["so 3 + 4 ="])[0][:-1])
    assert student.decode([forced]) == [" 7"]


def test_self_consistency_prefers_the_sample_whose_rationale_supports_it(tmp_path: Path) -> None:
    student = calculating_student(tmp_path / "bundle")
    labels = ["3 + 4", "3 + 4", "3 - 4"]
    rationales = ["He got 4, so 3 + 4 = 9.", "He got 4, so 3 + 4 = 7.", "He lost 4: 3 - 4 = -1."]
    queue = FakeQueue(student, labels + rationales, [SURE_RIGHT] * 3)
    result = run(Inference(student, 4, 8).explain(QUESTION, None, sampling(3), queue))
    rows = queue.calls[0][1]
    assert [row.forcer is not None for row in rows] == [False] * 3 + [True] * 3
    assert all(row.forcer is None for row in queue.calls[1][1])  # verdicts are not calculated
    assert [s.consistent for s in result.samples] == [False, True, True]
    # Every chain scores 0.9 / 0.95; the inconsistent one counts half: 7 wins (1.5 scores
    # against 1) and its consistent sample is returned, not the greedy one.
    assert result.chosen == result.samples[1]
    assert result.confidence == pytest.approx(1.5 * (0.9 / 0.95) / 3)


def test_without_the_calculator_rationales_are_still_checked(tmp_path: Path) -> None:
    student = calculating_student(tmp_path / "bundle", calculator=False)
    queue = FakeQueue(student, ["3 + 4", "He has some now."])
    result = run(Inference(student, 4, 8).explain(QUESTION, None, sampling(1), queue))
    assert queue.calls[0][1][1].forcer is None
    assert result.chosen.check == RationaleCheck(False, reason="states no result")
